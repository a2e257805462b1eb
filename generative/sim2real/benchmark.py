"""The sim-to-real table: one downstream model trained on each candidate training set, tested on the same held-out
real frames, over several seeds, with bootstrap intervals.

A *training set* is labelled images (uint8 ``(N, 3, H, W)``, ``pixel_norm`` targets, class ids): sim renders, sim
with visual randomization, sim passed through a translation (histogram matching, FDA, a learned translator), real
frames, generated frames, or a union of these. A *test set* is the held-out real frames, or those frames passed
through a real -> sim translator (the deployment direction: keep the sim-trained model, translate the camera).

:func:`run_table` trains one :class:`~generative.sim2real.downstream.TargetNet` per (training set, seed), in a pool
of worker processes of one thread each (independent trainings scale across cores better than threads inside one),
and evaluates each on the test sets its rows name. :func:`summarize` turns the per-frame figures into the table:
per row the mean position error (pixels) and class accuracy with hierarchical-bootstrap 95 % intervals
(:func:`~generative.sim2real.stats.hierarchical_bootstrap`: seeds and paired test frames), the gap closure of the
position error and of the class accuracy relative to the ``sim`` and ``real`` rows, and the gap's standard error.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generative.data import DataError
from generative.sim2real.downstream import DEFAULT_STEPS, evaluate_downstream, train_downstream
from generative.sim2real.stats import gap_standard_error, hierarchical_bootstrap

__all__ = ["Labelled", "Row", "closure", "load_labelled", "run_table", "summarize", "usable"]

CACHE_VERSION = 1  #: bump when the downstream model or its training changes: cached figures are then not reused


@dataclass
class Labelled:
    """Labelled images: uint8 ``images`` (N, 3, H, W), ``targets`` (N, 2) in ``pixel_norm``, ``classes`` (N,)."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or len(self.targets) != n or len(
                self.classes) != n:
            raise DataError(f"labelled images must be uint8 (N, 3, H, W) with N targets and classes, got "
                            f"{self.images.dtype} {tuple(self.images.shape)}, {len(self.targets)} targets and "
                            f"{len(self.classes)} classes")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: Any) -> Labelled:
        return Labelled(self.images[idx], self.targets[idx], self.classes[idx])

    def with_images(self, images: Any) -> Labelled:
        """The same labels with other images (a translation of these)."""
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        return Labelled(x, self.targets, self.classes)

    def repeat(self, k: int) -> Labelled:
        """These images ``k`` times over (to weigh a small set against a large one in a union)."""
        return Labelled(self.images.repeat(k, 1, 1, 1), self.targets.repeat(k, 1), self.classes.repeat(k))

    def __add__(self, other: Labelled) -> Labelled:
        return Labelled(torch.cat([self.images, other.images]), torch.cat([self.targets, other.targets]),
                        torch.cat([self.classes, other.classes]))


def usable(targets: torch.Tensor) -> torch.Tensor:
    """Which frames have a target inside the image (finite ``pixel_norm`` in [0, 1]^2): the ones a position can
    be learned from and scored on."""
    return torch.isfinite(targets).all(1) & (targets >= 0).all(1) & (targets <= 1).all(1)


def load_labelled(root: str | Path, size: int) -> tuple[Labelled, torch.Tensor]:
    """The usable frames of the armlab dataset at ``root`` at ``size`` px, and their indices in the dataset."""
    from generative.data import ArmlabDataset, load_tensors

    data = load_tensors(ArmlabDataset(root, size=size))
    keep = torch.nonzero(usable(data["target"])).flatten()
    return Labelled(data["image"], data["target"], data["class_id"]).subset(keep), keep


@dataclass(frozen=True)
class Row:
    """One row of the table: the downstream model trained on ``train`` and tested on ``test`` (set names)."""

    name: str
    train: str
    test: str = "real"
    label: str = ""


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _cache_path(cache: Path | None, job: dict) -> Path | None:
    """Where a job's figures are kept: a hash of everything that decides them (data, test sets, seed, budget)."""
    if cache is None:
        return None
    d: Labelled = job["train"]
    key = hashlib.sha256(json.dumps({
        "train": _digest(d.images, d.targets, d.classes), "seed": job["seed"], "steps": job["steps"],
        "batch_size": job["batch_size"], "version": CACHE_VERSION,
        "tests": {k: _digest(t.images, t.targets, t.classes) for k, t in sorted(job["tests"].items())},
    }, sort_keys=True).encode()).hexdigest()[:24]
    return cache / f"{job['name']}-seed{job['seed']}-{key}.npz"


def _job(job: dict) -> dict:
    path = job.get("cache_path")
    if path is not None and Path(path).is_file():
        with np.load(path) as z:
            results = {k.split("/", 1)[1]: {} for k in z.files if k.startswith("error_px/")}
            for k in results:
                results[k] = {"error_px": z[f"error_px/{k}"], "correct": z[f"correct/{k}"]}
            return {"train": job["name"], "seed": job["seed"], "results": results, "seconds": float(z["seconds"]),
                    "cached": True}
    out = _train_and_test(job)
    if path is not None:
        import io

        from robot_env.io.atomic import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, seconds=np.array(out["seconds"]),
                 **{f"{m}/{k}": v[m] for k, v in out["results"].items() for m in ("error_px", "correct")})
        atomic_write_bytes(path, buf.getvalue())
    return out


def _train_and_test(job: dict) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    d: Labelled = job["train"]
    net = train_downstream(d.images, d.targets, d.classes, steps=job["steps"], batch_size=job["batch_size"],
                           seed=job["seed"])
    out = {name: evaluate_downstream(net, t.images, t.targets, t.classes) for name, t in job["tests"].items()}
    return {"train": job["name"], "seed": job["seed"], "results": out, "seconds": time.perf_counter() - t0,
            "cached": False}


def run_table(
    train_sets: Mapping[str, Labelled],
    test_sets: Mapping[str, Labelled],
    rows: Sequence[Row],
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = DEFAULT_STEPS,
    batch_size: int = 32,
    workers: int = 2,
    progress: Callable[[str], None] | None = None,
    cache: str | Path | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Train and evaluate every row's model for every seed; returns per row ``{"error_px": (S, N), "correct": (S,
    N)}`` over the row's test set, plus ``"seconds"`` (training seconds per seed). Rows sharing a training set share
    its models. ``workers`` processes (spawned, one torch thread each; 0 or 1: in this process). ``cache``: a folder
    where each model's figures are kept under a hash of its data, test sets, seed and budget, so that a run that was
    killed, or extended by a row, trains only what it has not trained yet."""
    for r in rows:
        if r.train not in train_sets:
            raise DataError(f"row {r.name!r} trains on {r.train!r}, which is not among the training sets")
        if r.test not in test_sets:
            raise DataError(f"row {r.name!r} tests on {r.test!r}, which is not among the test sets")
    needs: dict[str, set[str]] = {}
    for r in rows:
        needs.setdefault(r.train, set()).add(r.test)
    jobs = [{"name": name, "seed": int(s), "train": train_sets[name], "steps": int(steps),
             "batch_size": int(batch_size), "tests": {t: test_sets[t] for t in sorted(tests)}}
            for name, tests in needs.items() for s in seeds]
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
    for j in jobs:
        j["cache_path"] = _cache_path(Path(cache) if cache is not None else None, j)
    results: list[dict] = []
    if workers <= 1:
        for j in jobs:
            results.append(_job(j))
            if progress:
                progress(_done(results[-1]))
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for res in pool.map(_job, jobs):
                results.append(res)
                if progress:
                    progress(_done(res))
    by = {(r["train"], r["seed"]): r for r in results}
    table: dict[str, dict[str, np.ndarray]] = {}
    for r in rows:
        per_seed = [by[(r.train, int(s))] for s in seeds]
        table[r.name] = {
            "error_px": np.stack([p["results"][r.test]["error_px"] for p in per_seed]),
            "correct": np.stack([p["results"][r.test]["correct"] for p in per_seed]),
            "seconds": np.array([p["seconds"] for p in per_seed]),
        }
    return table


def _done(res: dict) -> str:
    how = "cached" if res.get("cached") else f"{res['seconds']:.0f} s"
    return f"  trained on {res['train']} (seed {res['seed']}): {how}"


def closure(worse: float, value: float, better: float) -> float:
    """The fraction of the gap from ``worse`` to ``better`` that ``value`` closes (NaN when there is no gap)."""
    gap = better - worse
    return (value - worse) / gap if gap != 0 else float("nan")


def summarize(table: Mapping[str, Mapping[str, np.ndarray]], sim: str = "sim", real: str = "real",
              n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The figures of a :func:`run_table` result: per row ``error_px`` and ``accuracy`` ``{"mean", "lo", "hi"}``
    (95 % hierarchical bootstrap), the per-seed means, and (rows other than ``sim`` and ``real``, when both are in
    the table) ``closure_px`` and ``closure_acc`` with intervals; plus ``gap_px`` (``e_sim - e_real``), its standard
    error over seeds ``gap_px_se`` and ``gap_over_se``, and ``e_sim_over_e_real``."""
    names = list(table)
    errs = {n: table[n]["error_px"] for n in names}
    accs = {n: table[n]["correct"] for n in names}
    has_gap = sim in table and real in table
    derived_e: dict[str, Callable] = {}
    derived_a: dict[str, Callable] = {}
    if has_gap:
        for n in names:
            if n not in (sim, real):
                derived_e[f"closure:{n}"] = lambda m, n=n: closure(m[sim], m[n], m[real])
                derived_a[f"closure:{n}"] = lambda m, n=n: closure(m[sim], m[n], m[real])
    be = hierarchical_bootstrap(errs, derived_e, n_boot=n_boot, seed=seed)
    ba = hierarchical_bootstrap(accs, derived_a, n_boot=n_boot, seed=seed)
    rows: dict[str, dict[str, Any]] = {}
    for n in names:
        rows[n] = {
            "error_px": {k: be[n][k] for k in ("mean", "lo", "hi")},
            "accuracy": {k: ba[n][k] for k in ("mean", "lo", "hi")},
            "error_px_seeds": errs[n].mean(1).tolist(), "accuracy_seeds": accs[n].mean(1).tolist(),
            "n_seeds": int(errs[n].shape[0]), "train_s": float(np.mean(table[n].get("seconds", [np.nan]))),
        }
        if has_gap and n not in (sim, real):
            rows[n]["closure_px"] = {k: be[f"closure:{n}"][k] for k in ("mean", "lo", "hi")}
            rows[n]["closure_acc"] = {k: ba[f"closure:{n}"][k] for k in ("mean", "lo", "hi")}
    out: dict[str, Any] = {"rows": rows, "n_test": int(next(iter(errs.values())).shape[1]) if errs else 0}
    if has_gap:
        e_sim, e_real = rows[sim]["error_px_seeds"], rows[real]["error_px_seeds"]
        gap = float(np.mean(e_sim) - np.mean(e_real))
        se = gap_standard_error(e_sim, e_real)
        out.update({"gap_px": gap, "gap_px_se": se, "gap_over_se": gap / se if se and np.isfinite(se) and se > 0
                    else float("inf"), "e_sim_over_e_real": float(np.mean(e_sim) / np.mean(e_real))})
    return out
