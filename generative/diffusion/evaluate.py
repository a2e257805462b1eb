"""Probe metrics of a trained diffusion run's samples against a dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from generative.data.labelled import real_sample
from generative.diffusion.config import DiffusionConfig, check_sampler, default_guidance
from generative.diffusion.pipeline import Pipeline, load_pipeline, to_uint8
from generative.runs import pick_device, read_summary
from robot_env.io.errors import DataError, ParamError

__all__ = ["evaluate_diffusion"]


def _fill_labels(cfg: DiffusionConfig, real: dict[str, torch.Tensor], gen: torch.Generator
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The real frames' labels as the conditions of the fakes (missing ones replaced: random classes, the image
    centre, the middle of the training joint range)."""
    y = real["class_id"].clone() if cfg.n_classes else None
    c = real["target"].clone().float() if "target" in cfg.cond else None
    q = None
    if cfg.n_joints:
        low, high = cfg.joint_range()
        mid = ((low + high) / 2).float()
        q = real.get("joints")
        if q is not None and q.shape[1] != cfg.n_joints:
            raise DataError(f"the dataset's labels have {q.shape[1]} joint positions, the model takes {cfg.n_joints}")
        q = mid.expand(len(real["image"]), cfg.n_joints).clone() if q is None else q.clone().float()
        bad = ~torch.isfinite(q).all(1)
        q[bad] = mid
    if y is not None and ((y < 0) | (y >= cfg.n_classes)).any():
        bad = (y < 0) | (y >= cfg.n_classes)
        y[bad] = torch.randint(0, cfg.n_classes, (int(bad.sum()),), generator=gen)
    if c is not None and not torch.isfinite(c).all():
        c[~torch.isfinite(c).all(1)] = 0.5
    return y, c, q


def _label_report(pipe: Pipeline, root: Path, name: str, steps: int, guidance: float, n: int, seed: int,
                  batch_size: int, progress: bool, probe: Any) -> tuple[dict[str, Any], float | None, int]:
    """The probe report of a label-conditioned run: samples with the real frames' labels as conditions."""
    from generative.metrics import generation_report

    cfg = pipe.cfg
    real, gen = real_sample(root, cfg.size, n, seed, progress=progress)
    n_use = len(real["image"])
    y, c, q = _fill_labels(cfg, real, gen)
    x = pipe.generate(n_use, y, c, name, steps, guidance, gen, batch_size, progress, joints=q)
    fake: dict[str, Any] = {"image": torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2)}
    if y is not None:
        fake["class_id"] = y
    if c is not None:
        fake["target"] = c
    return generation_report(probe, real, fake, seed=seed), pipe.last_seconds, n_use


def _text_report(pipe: Pipeline, root: Path, name: str, steps: int, guidance: float, n: int, seed: int,
                 batch_size: int, probe: Any, side_margin: float) -> dict[str, Any]:
    """The probe report of a text run: one sample per real frame's caption (``generative.text.prompt_report``)."""
    from generative.diffusion.text import prompt_tokens
    from generative.text import prompt_report

    def generate(prompts: list[str], gen: torch.Generator) -> torch.Tensor:
        tok = prompt_tokens(pipe.cfg, prompts, len(prompts))
        return pipe.generate(len(prompts), None, None, name, steps, guidance, gen, batch_size, tokens=tok,
                             side_margin=side_margin)

    return prompt_report(generate, root, pipe.cfg.size, n=n, seed=seed, probe=probe, classes=pipe.cfg.classes)


def evaluate_diffusion(
    run_dir: str | Path,
    data_dir: str | Path,
    quick: bool = False,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float | None = None,
    n: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    probe_steps: int | None = None,
    ema: bool = True,
    batch_size: int = 64,
    progress: bool = False,
    pipeline: Pipeline | None = None,
    probe: Any = None,
    side_margin: float | None = None,
) -> dict[str, Any]:
    """Probe metrics of the run's samples against the armlab dataset at ``data_dir`` (the keys of ``armlab gan eval
    --json``).

    The probe is :func:`generative.metrics.probe_for` ``(data_dir, size, quick=quick)`` (trained once per dataset
    and cached; ``probe_steps`` overrides its length). ``n`` real frames are drawn from the dataset (seeded) and
    ``n`` images are sampled with ``sampler`` / ``steps`` / ``guidance`` (None: the run's default, 2 or, for a text
    run, 15) and the *same frames'* labels as conditions. Returns :func:`generative.metrics.generation_report`
    (``class_acc_ratio``, ``pos_err_ratio``, ``diversity_ratio``, ``fid_custom``, ``kid_custom``, ``mode_coverage``,
    ...) plus ``cond``, ``steps`` (the
    checkpoint's), ``size``, ``latent``, ``sampler``, ``sampler_steps``, ``guidance``, ``sample_images_per_s``,
    ``train_images_per_s``, ``probe_from_cache`` and ``eval_seconds``. A text run (``cond = ("text",)``) is given
    one caption per real frame instead (:func:`generative.text.prompt_report`: also ``side_acc_fake`` /
    ``side_acc_real``), its layouts drawn ``side_margin`` from the side cuts (None: ``generative.text.SIDE_MARGIN``;
    the report's ``side_margin``)."""
    from generative.text import side_margin as _side_margin

    t0 = time.perf_counter()
    name = check_sampler(sampler, steps, guidance)
    if int(n) < 2:
        raise ParamError("n", f"{{name}} must be at least 2 (FID needs two images), got {n}")
    dev = pick_device(device)
    pipe = pipeline if pipeline is not None else load_pipeline(run_dir, dev, ema)
    cfg = pipe.cfg
    guidance = default_guidance(cfg) if guidance is None else float(guidance)
    margin = _side_margin(side_margin)
    root = Path(data_dir)
    if probe is None:
        from generative.metrics import probe_for

        probe = probe_for(root, cfg.size, quick=quick, steps=probe_steps, device=dev, progress=progress)
    if "text" in cfg.cond:
        report = _text_report(pipe, root, name, int(steps), float(guidance), int(n), int(seed), batch_size, probe,
                              margin)
        report["side_margin"] = margin
        sample_seconds, n_use = pipe.last_seconds, report["n_fake"]
    else:
        report, sample_seconds, n_use = _label_report(pipe, root, name, int(steps), float(guidance), int(n),
                                                      int(seed), batch_size, progress, probe)
    summary = read_summary(run_dir) if run_dir is not None else None
    summary = summary or {}
    report.update({
        "cond": list(cfg.cond), "steps": pipe.step, "size": cfg.size, "latent": cfg.latent, "sampler": name,
        "sampler_steps": int(steps), "guidance": float(guidance),
        "sample_images_per_s": n_use / sample_seconds if sample_seconds else None,
        "train_images_per_s": summary.get("images_per_s"),
        "probe_from_cache": bool(getattr(probe, "from_cache", False)),
        "eval_seconds": time.perf_counter() - t0,
    })
    return report
