"""Sim-to-real that helps, measured: does a translation make a camera model better on held-out real frames?

    armlab bench sim2real --json          # the full table (about 35 minutes on 2 idle CPU cores)
    armlab bench sim2real --quick         # a smoke test of the whole pipeline (a minute)

1. Three datasets of the same layouts (seed --seed, --n frames, --size px; written once under --out/data): `sim`
   (the renderer's plain look: only the camera pose and the distractors vary), `photo` (the same scenes through
   the benchmark's real camera, `--style photo`, see robot_env/dataset/look.py) and `randomized` (sim with every
   visual randomization: colours, textures, light, background). The photo frames are split by index: the last
   --holdout are the held-out test frames, the rest the oracle's labelled frames; the first of them are
   the --n-real frames a user has (unlabelled: the translators and the free translations see them), and of those
   the first --n-few are labelled (the few-labels rows).
2. The look translator (`armlab cyclegan train --generator look`: a camera model -- blur, colour and tone,
   vignetting, noise -- plus a small residual net, with CycleGAN's adversarial and cycle terms) trained on the sim
   frames and the --n-real real frames; beside it a second one that also has pix2pix's paired L1 term on the
   --n-few labelled frames and their scenes re-rendered in sim (`--pairs`), and a one-sided CUT with the same look
   generator (`--method cut`: PatchNCE in place of the cycle); they resume from --out/runs.
   The translators' speed against CycleGAN's ResNet generators is measured side by side at the same size
   and batch (--speed-steps steps each; CycleGAN with the discriminators of `armlab bench cyclegan`, width 32,
   the look translators with width 16), and each one's gap closure per training minute is printed.
3. One downstream model (generative.sim2real.downstream.TargetNet: the target's pixel position and its class) per
   row and seed (--seeds), trained for --steps steps, tested on the same held-out real frames:
   sim | randomized | histogram (sim matched to the real frames' histograms) | fda (Fourier domain adaptation, beta
   --fda-beta) | translated (G(sim)) | translated_cut (CUT's G(sim)) | translated randomized (G(randomized)) |
   real2sim (the sim model on F(real): translate the camera at deployment) | real (the oracle, every labelled real
   frame) | few labels: real_few (the --n-few labelled frames), generated (a second look translator, trained with the
   paired term on the labelled frames re-rendered in sim, is the conditional generator: G of sim renders, each frame
   labelled by the scene it rendered) and real_few + generated (the few real frames repeated to half of the set).
4. Every figure is the mean over seeds with a 95 % hierarchical bootstrap interval (seeds and paired test frames);
   gap closure = (e_sim - e_row) / (e_sim - e_real), and the same for the class accuracy. PSNR of each
   translation of the held-out sim frames against their paired real frames. A figure (--out/sim2real.png: the
   table as bars with intervals, and example frames) is written beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from armlab_scripts._common import UsageError, emit_json

TARGETS = {"e_sim_over_e_real": 2.0, "gap_over_se": 5.0, "closure": 0.6, "closure_lo": 0.4, "psnr_gain": 2.0,
           "combined_closure": 0.75, "generated_vs_real_few_acc": 0.8, "speed_ratio": 3.0,
           "translator_minutes": 30.0}
FULL = {"n": 2500, "size": 64, "holdout": 0.2, "n_real": 300, "n_few": 100, "seeds": 3, "steps": 1500, "batch_size": 32,
        "translator_steps": 3000, "translator_batch": 8, "translator_lr": 1e-3, "fda_beta": 0.01, "speed_steps": 30,
        "n_boot": 2000, "paired_weight": 100.0}
QUICK = {"n": 60, "size": 32, "holdout": 0.25, "n_real": 24, "n_few": 12, "seeds": 2, "steps": 20, "batch_size": 8,
         "translator_steps": 6, "translator_batch": 4, "translator_lr": 1e-3, "fda_beta": 0.01, "speed_steps": 3,
         "n_boot": 200, "paired_weight": 10.0}
LAYOUT = ("camera", "distractors")  #: what varies in the sim and photo datasets: the scenes, not their looks
ROWS = (  # name, training set, test set, label
    ("sim", "sim", "real", "sim"),
    ("randomized", "randomized", "real", "sim, visual randomization"),
    ("histogram", "histogram", "real", "sim, histogram matched"),
    ("fda", "fda", "real", "sim, FDA"),
    ("translated", "translated", "real", "sim -> real (look translator)"),
    ("translated_cut", "translated_cut", "real", "sim -> real (CUT, look)"),
    ("translated_randomized", "translated_randomized", "real", "randomized sim -> real"),
    ("real2sim", "sim", "real2sim", "sim model on F(real)"),
    ("real", "real", "real", "real (oracle, all labels)"),
    ("real_few", "real_few", "real", "real, few labels"),
    ("generated", "generated", "real", "generated (look + pairs)"),
    ("real_few_generated", "real_few_generated", "real", "few labels + generated"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny datasets and budgets: checks the pipeline only")
    p.add_argument("--out", default="runs/bench/sim2real", help="working folder (default runs/bench/sim2real)")
    for key, text in (("n", "frames per dataset"), ("n_real", "the real frames the translators see (unlabelled)"),
                      ("n_few", "of those, the labelled ones (few-labels rows, the paired term)"),
                      ("seeds", "downstream seeds per row"), ("steps", "downstream training steps"),
                      ("translator_steps", "look translator training steps"),
                      ("speed_steps", "steps of each translator in the side-by-side speed measurement")):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"{text} (default {FULL[key]}; --quick {QUICK[key]})")
    p.add_argument("--fda-beta", type=float, default=None, help=f"FDA's band (default {FULL['fda_beta']})")
    p.add_argument("--paired-weight", type=float, default=None,
                   help=f"weight of the paired term of the generator of the few-labels rows (default "
                        f"{FULL['paired_weight']:g}, pix2pix's)")
    p.add_argument("--seed", type=int, default=0, help="dataset and translator seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="processes training downstream models (default 2)")
    p.add_argument("--cyclegan-run", default=None,
                   help="a CycleGAN run (armlab cyclegan train) between this benchmark's sim and photo data: adds "
                        "its row, and its gap closure per training minute beside the look translator's")
    p.add_argument("--fresh", action="store_true",
                   help="train the translators and the downstream models again (the datasets are kept)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def _settings(args: argparse.Namespace) -> dict:
    s = dict(QUICK if args.quick else FULL)
    for key in ("n", "n_real", "n_few", "seeds", "steps", "translator_steps", "speed_steps", "fda_beta",
                "paired_weight"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    for key in ("seeds", "steps", "translator_steps", "speed_steps"):
        if s[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1, got {s[key]}.")
    if s["n"] < 20:
        raise UsageError(f"--n must be at least 20 frames, got {s['n']}.")
    if not 2 <= s["n_real"] <= int(s["n"] * (1 - s["holdout"])):
        raise UsageError(f"--n-real must be between 2 and the {int(s['n'] * (1 - s['holdout']))} training frames, "
                         f"got {s['n_real']}.")
    if not 2 <= s["n_few"] <= s["n_real"]:
        raise UsageError(f"--n-few must be between 2 and --n-real ({s['n_real']}), got {s['n_few']}.")
    if s["paired_weight"] < 0:
        raise UsageError(f"--paired-weight must be >= 0, got {s['paired_weight']}.")
    if not 0 <= s["fda_beta"] < 0.5:
        raise UsageError(f"--fda-beta must be in [0, 0.5), got {s['fda_beta']}.")
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}.")
    s["seed"] = int(args.seed)
    return s


def _dataset(out: Path, style: str, randomize: tuple[str, ...], n: int, size: int, seed: int) -> str:
    """Generate (or reuse) one dataset; returns its folder."""
    from robot_env.dataset import DatasetConfig, generate

    cfg = DatasetConfig(n=n, size=size, seed=seed, style=style, randomize=randomize).validate()
    manifest = out / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("settings") == cfg.settings():
        return str(out)
    generate(out, cfg, workers=1, progress=False)
    return str(out)


def _translator(sim: str, real: str, run: Path, s: dict, generator: str, steps: int, n_train: int,
                pairs: int = 0, method: str = "cycle") -> dict:
    from generative.cyclegan import TRAIN_DEFAULTS, train_cyclegan
    from generative.training import TrainConfig
    from robot_env.io.threads import set_threads

    set_threads(1)
    look = generator == "look"
    cfg = TrainConfig(out=str(run), steps=steps, **{**TRAIN_DEFAULTS, "batch_size": s["translator_batch"],
                                                    "ema_decay": 0.99}, seed=s["seed"], device="cpu",
                      progress=False, tensorboard=False, log_every=max(1, min(100, steps // 4)),
                      sample_every=max(1, steps // 3), checkpoint_every=max(1, min(500, steps)))
    t0 = time.perf_counter()
    summary = train_cyclegan(sim, real, cfg, size=s["size"], generator=generator, base=None if look else 16,
                             n_blocks=6, d_base=16 if look else 32, lr=s["translator_lr"] if look else 2e-4,
                             sim_limit=n_train, real_limit=s["n_real"], pairs=pairs,
                             paired_weight=s["paired_weight"], method=method)
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def _speed(sim: str, real: str, out: Path, s: dict, n_train: int) -> dict:
    """images/s of the look translator and of CycleGAN's ResNet pair, one after the other in this process, one
    thread each, the same size, batch and data (fresh runs of --speed-steps steps; the first step is warm-up)."""
    import shutil

    from robot_env.io.threads import set_threads

    set_threads(1)
    rates = {}
    for name, kind, method in (("resnet", "resnet", "cycle"), ("look", "look", "cycle"), ("cut", "look", "cut")):
        run = out / f"speed_{name}"
        shutil.rmtree(run, ignore_errors=True)
        rates[name] = _translator(sim, real, run, s, kind, s["speed_steps"] + 1, n_train,
                                  method=method)["images_per_s"]
        shutil.rmtree(run, ignore_errors=True)
    return rates


def _psnr(a, b) -> float:
    from generative.metrics import psnr

    return float(sum(min(psnr(x, y), 100.0) for x, y in zip(a, b)) / len(a))


def _nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def measure(out: str | Path, s: dict, quick: bool = False, fresh: bool = False, workers: int = 2,
            say=print, cyclegan_run: str | None = None) -> dict:
    """Run the benchmark; returns the figures and the arrays of the figure (see the module docstring)."""
    import shutil

    import torch

    from generative.cyclegan import load_generators, translate_images
    from generative.sim2real import Row, fda, histogram_match, load_labelled, run_table, summarize

    out = Path(out) / ("quick" if quick else "full")
    t0 = time.perf_counter()
    n, size, seed = s["n"], s["size"], s["seed"]
    data = out / "data"
    dirs = {"sim": data / f"sim_n{n}_{size}px_seed{seed}", "photo": data / f"photo_n{n}_{size}px_seed{seed}",
            "randomized": data / f"randomized_n{n}_{size}px_seed{seed}"}
    specs = {"sim": ("sim", LAYOUT), "photo": ("photo", LAYOUT), "randomized": ("sim", ("colors", "textures",
             "light", "camera", "distractors", "background"))}
    say(f"datasets: sim, photo and randomized, {n} frames at {size} px (seed {seed}) under {data}", flush=True)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        list(pool.map(_dataset, *zip(*[(dirs[k], *specs[k], n, size, seed) for k in dirs])))
    t_data = time.perf_counter() - t0
    cut = int(round(n * (1 - s["holdout"])))

    (sim_all, sim_idx), (randomized, rand_idx), (photo, photo_idx) = (
        load_labelled(dirs[k], size) for k in ("sim", "randomized", "photo"))
    sim, randomized = sim_all.subset(sim_idx < cut), randomized.subset(rand_idx < cut)
    real, real_idx = photo.subset(photo_idx < cut), photo_idx[photo_idx < cut]
    test, test_idx = photo.subset(photo_idx >= cut), photo_idx[photo_idx >= cut]
    # the test frames' paired renders (for PSNR): the test frames whose target is inside the sim frame too
    in_both = torch.isin(test_idx, sim_idx)
    sim_test = sim_all.subset(torch.searchsorted(sim_idx, test_idx[in_both]))
    few = real.subset(real_idx < s["n_few"])  # the labelled few: frames 0 .. n_few - 1
    seen = real.subset(real_idx < s["n_real"]).images  # the real frames a user has, unlabelled
    train = {"sim": sim, "randomized": randomized, "real": real, "real_few": few,
             "histogram": sim.with_images(histogram_match(sim.images, seen)),
             "fda": sim.with_images(fda(sim.images, seen, beta=s["fda_beta"], seed=seed))}
    tests = {"real": test}

    # the two translators train side by side, one process and one thread each
    runs = {"look": out / "runs" / "look", "look_paired": out / "runs" / f"look_paired_w{s['paired_weight']:g}",
            "look_cut": out / "runs" / "look_cut"}
    for run in [*runs.values(), out / "cache"]:
        if fresh and run.exists():
            shutil.rmtree(run)
    say(f"training three look translators ({s['translator_steps']} steps of {s['translator_batch']}) on {len(sim)} "
        f"sim and {s['n_real']} real frames, two at a time: unpaired, with the paired term on the {s['n_few']} "
        f"labelled frames re-rendered in sim, and one-sided (CUT)", flush=True)
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        jobs = {k: pool.submit(_translator, str(dirs["sim"]), str(dirs["photo"]), run, s, "look",
                               s["translator_steps"], cut, s["n_few"] if k == "look_paired" else 0,
                               "cut" if k == "look_cut" else "cycle")
                for k, run in runs.items()}
        summaries = {k: j.result() for k, j in jobs.items()}
    summary = summaries["look"]
    say(f"  look translators: {summary['steps']} steps, " + ", ".join(
        f"{k} {v['wall_s'] / 60:.1f}" for k, v in summaries.items()) + " min this call", flush=True)
    gens, paired = load_generators(runs["look"]), load_generators(runs["look_paired"])
    one_sided = load_generators(runs["look_cut"])
    g = lambda x, d="sim2real", gen=gens: translate_images(gen, x, d)  # noqa: E731
    train["translated"] = sim.with_images(g(sim.images))
    train["translated_randomized"] = randomized.with_images(g(randomized.images))
    train["translated_cut"] = sim.with_images(g(sim.images, gen=one_sided))
    train["generated"] = sim.with_images(g(sim.images, gen=paired))
    # the few real frames repeated to about as many as the generated ones: half of each batch is real
    train["real_few_generated"] = few.repeat(max(1, round(len(sim) / len(few)))) + train["generated"]
    tests["real2sim"] = test.with_images(g(test.images, "real2sim"))
    rows = [Row(*r[:3], label=r[3]) for r in ROWS]
    cyclegan = None
    if cyclegan_run is not None:
        cyclegan = load_generators(cyclegan_run)
        train["cyclegan"] = sim.with_images(g(sim.images, gen=cyclegan))
        rows.insert(5, Row("cyclegan", "cyclegan", "real", "sim -> real (CycleGAN)"))
    say(f"downstream models: {len(rows)} rows x {s['seeds']} seeds x {s['steps']} steps ({workers} processes)",
        flush=True)
    table = run_table(train, tests, rows, tuple(range(s["seeds"])), s["steps"], s["batch_size"], workers,
                      progress=lambda m: say(m, flush=True), cache=out / "cache")

    say("side-by-side speed: look translator vs CycleGAN's ResNet generators", flush=True)
    rates = _speed(str(dirs["sim"]), str(dirs["photo"]), out / "runs", s, cut)

    fig = summarize(table, n_boot=s["n_boot"], seed=seed)
    st, rt = _nhwc(sim_test.images), _nhwc(test.subset(in_both).images)
    views = {"sim": st, "histogram": histogram_match(st, seen), "fda": fda(st, seen, beta=s["fda_beta"], seed=seed),
             "translated": g(st), "translated_cut": g(st, gen=one_sided), "generated": g(st, gen=paired)}
    if cyclegan is not None:
        views["cyclegan"] = g(st, gen=cyclegan)
    psnr = {k: _psnr(v, rt) for k, v in views.items()}
    fig.update({
        "psnr": psnr, "psnr_gain": psnr["translated"] - psnr["sim"], "images_per_s_look": rates["look"],
        "images_per_s_cyclegan": rates["resnet"], "images_per_s_cut": rates["cut"],
        "speed_ratio": rates["look"] / rates["resnet"] if rates["look"] and rates["resnet"] else None,
        "speed_ratio_cut": rates["cut"] / rates["resnet"] if rates["cut"] and rates["resnet"] else None,
        "translator_steps": summary["steps"], "translator_minutes_this_call": summary["wall_s"] / 60,
        "translator_minutes": _run_minutes(runs["look"], summary),
        "translator_paired_minutes": _run_minutes(runs["look_paired"], summaries["look_paired"]),
        "translator_cut_minutes": _run_minutes(runs["look_cut"], summaries["look_cut"]),
        "n_train": len(sim), "n_real_labelled": len(real), "n_real": s["n_real"], "n_few": len(few),
        "data_s": t_data, "wall_s": time.perf_counter() - t0, "quick": quick,
        "settings": s, "labels": {r.name: r.label for r in rows},
    })
    per_minute = [("translated", fig["translator_minutes"]), ("translated_cut", fig["translator_cut_minutes"])]
    if cyclegan is not None:
        fig["cyclegan_run"] = str(cyclegan_run)
        fig["cyclegan_minutes"] = _logged_minutes(Path(cyclegan_run))
        per_minute.append(("cyclegan", fig["cyclegan_minutes"]))
    for k, minutes in per_minute:
        c = fig["rows"][k]["closure_px"]["mean"]
        fig[f"closure_per_minute_{k}"] = c / minutes if minutes else None
    fig["targets"] = _targets(fig)
    fig["_views"] = {**views, "real": rt, "real2sim": _nhwc(tests["real2sim"].subset(in_both).images)}
    return fig


def _run_minutes(run: Path, summary: dict) -> float:
    """The translator's total training time: this call's plus what earlier calls recorded beside the run."""
    from robot_env.io.atomic import atomic_write_json

    record = run / "bench_time.json"
    try:
        before = json.loads(record.read_text())
    except (OSError, ValueError):
        before = {"seconds": 0.0, "steps": 0}
    total = {"seconds": float(before.get("seconds", 0.0)), "steps": int(before.get("steps", 0))}
    if summary.get("steps_run"):
        total = {"seconds": total["seconds"] + summary["wall_s"], "steps": int(summary["steps"])}
        atomic_write_json(record, total)
    return total["seconds"] / 60


def _logged_minutes(run: Path) -> float | None:
    """A translator run's training minutes from its log (steps x batch / the logged images per second)."""
    import csv

    try:
        with open(run / "log.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("images_per_s")]
        cfg = json.loads((run / "config.json").read_text())
        batch = int(cfg["train"]["batch_size"])
    except (OSError, ValueError, KeyError):
        return None
    if not rows:
        return None
    rates = [float(r["images_per_s"]) for r in rows]
    return int(rows[-1]["step"]) * batch / (sum(rates) / len(rates)) / 60


def _targets(f: dict) -> dict:
    rows, t = f["rows"], TARGETS
    c = {k: rows[k]["closure_px"] for k in rows if "closure_px" in rows[k]}
    best = max(("translated_randomized", "randomized", "translated"), key=lambda k: c[k]["mean"])
    few, gen, both = rows["real_few"], rows["generated"], rows["real_few_generated"]
    return {
        "e_sim_over_e_real": f["e_sim_over_e_real"] >= t["e_sim_over_e_real"],
        "gap_over_se": f["gap_over_se"] >= t["gap_over_se"],
        "translation_closure": c["translated"]["mean"] >= t["closure"],
        "translation_closure_lo": (c["translated"]["lo"] or -math.inf) >= t["closure_lo"],
        "beats_free_translations": c["translated"]["mean"] > max(c["histogram"]["mean"], c["fda"]["mean"]),
        "psnr_gain": f["psnr_gain"] >= t["psnr_gain"],
        "combined_closure": c[best]["mean"] >= t["combined_closure"], "combined_best": best,
        "few_labels_error": both["error_px"]["hi"] < few["error_px"]["lo"],
        "few_labels_accuracy": both["accuracy"]["lo"] > few["accuracy"]["hi"],
        "generated_vs_real_few_acc": gen["accuracy"]["mean"] >= t["generated_vs_real_few_acc"]
        * few["accuracy"]["mean"],
        "speed_ratio": (f["speed_ratio"] or 0) >= t["speed_ratio"],
        "translator_minutes": f["translator_minutes"] <= t["translator_minutes"],
    }


def _ci(d: dict, digits: int = 2) -> str:
    if d["mean"] is None or not math.isfinite(d["mean"]):
        return "-"
    lo = "?" if d["lo"] is None else f"{d['lo']:.{digits}f}"
    hi = "?" if d["hi"] is None else f"{d['hi']:.{digits}f}"
    return f"{d['mean']:.{digits}f} [{lo}, {hi}]"


def print_table(f: dict) -> None:
    rows = f["rows"]
    print(f"\nheld-out real frames: {f['n_test']}; {rows['sim']['n_seeds']} seeds per row; 95 % bootstrap intervals")
    print(f"  {'trained on':<30}{'position error (px)':>24}{'class accuracy':>24}{'gap closure (px)':>24}"
          f"{'closure (class)':>24}")
    for name, r in rows.items():
        c = _ci(r["closure_px"]) if "closure_px" in r else ""
        ca = _ci(r["closure_acc"]) if "closure_acc" in r else ""
        print(f"  {f['labels'][name]:<30}{_ci(r['error_px']):>24}{_ci(r['accuracy'], 3):>24}{c:>24}{ca:>24}")
    p = f["psnr"]
    print(f"gap: e_sim - e_real = {f['gap_px']:.2f} px = {f['gap_over_se']:.0f} x its standard error; e_sim / e_real "
          f"= {f['e_sim_over_e_real']:.1f}")
    print(f"PSNR against the paired real frame: sim {p['sim']:.2f} dB, histogram {p['histogram']:.2f}, FDA "
          f"{p['fda']:.2f}, translated {p['translated']:.2f} (gain {f['psnr_gain']:+.2f} dB), CUT "
          f"{p['translated_cut']:.2f}, generated (with pairs) {p['generated']:.2f}")
    ratio = "-" if f["speed_ratio"] is None else f"{f['speed_ratio']:.2f}x"
    cut = "-" if f["speed_ratio_cut"] is None else f"{f['speed_ratio_cut']:.2f}x"
    print(f"training speed, side by side: look translator {f['images_per_s_look']:.1f} images/s ({ratio} "
          f"CycleGAN's), CUT with the look generator {f['images_per_s_cut']:.1f} ({cut}), CycleGAN "
          f"{f['images_per_s_cyclegan']:.1f} images/s; the translators trained {f['translator_minutes']:.1f} (look) "
          f"and {f['translator_cut_minutes']:.1f} (CUT) min for {f['translator_steps']} steps")
    line = (f"gap closure per training minute: look translator {f['closure_per_minute_translated']:.3f} "
            f"({f['translator_minutes']:.1f} min), CUT {f['closure_per_minute_translated_cut']:.3f} "
            f"({f['translator_cut_minutes']:.1f} min)")
    if f.get("cyclegan_minutes"):
        line += f", CycleGAN {f['closure_per_minute_cyclegan']:.3f} ({f['cyclegan_minutes']:.1f} min)"
    print(line)
    t = f["targets"]
    print("targets: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in t.items() if isinstance(v, bool))
          + (" (--quick: budgets far too small to meet them)" if f["quick"] else ""))


def write_figure(f: dict, path: Path) -> None:
    """Bars (position error, class accuracy, with intervals) per row, and a strip of example frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from armlab_scripts._demo_figures import save_fig

    rows = f["rows"]
    names = list(rows)
    fig = plt.figure(figsize=(12, 7.5))
    for k, (key, title) in enumerate((("error_px", "position error on held-out real frames (px)"),
                                      ("accuracy", "class accuracy on held-out real frames"))):
        ax = fig.add_subplot(2, 2, k + 1)
        m = np.array([rows[n][key]["mean"] for n in names])
        lo = np.array([rows[n][key]["lo"] if rows[n][key]["lo"] is not None else rows[n][key]["mean"] for n in names])
        hi = np.array([rows[n][key]["hi"] if rows[n][key]["hi"] is not None else rows[n][key]["mean"] for n in names])
        ax.barh(range(len(names)), m, xerr=[m - lo, hi - m], color="tab:blue", alpha=0.75, capsize=3)
        ax.set_yticks(range(len(names)), [f["labels"][n] for n in names] if k == 0 else [""] * len(names),
                      fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        if key == "error_px":
            ax.set_xscale("log")
    views = f["_views"]
    order = ("sim", "histogram", "fda", "translated", "generated", "real", "real2sim")
    k = min(6, len(views["real"]))
    strip = np.concatenate([np.concatenate(list(views[v][:k]), 0) for v in order], 1)
    ax = fig.add_subplot(2, 1, 2)
    ax.imshow(strip, interpolation="nearest", aspect="equal")
    w = views["real"].shape[2]
    ax.set_xticks([(i + 0.5) * w for i in range(len(order))],
                  ["sim", "histogram", "FDA", "G(sim)", "G+pairs", "real", "F(real)"], fontsize=8)
    ax.set_yticks([])
    fig.suptitle("armlab bench sim2real: the same camera model trained on each set, tested on real frames",
                 fontsize=10)
    fig.tight_layout()
    save_fig(fig, path)


def run(args: argparse.Namespace) -> int:
    s = _settings(args)
    if args.cyclegan_run is not None and not (Path(args.cyclegan_run) / "checkpoint.pt").is_file():
        raise UsageError(f"--cyclegan-run {args.cyclegan_run!r} is not a CycleGAN run folder (no checkpoint.pt).")
    f = measure(args.out, s, quick=args.quick, fresh=args.fresh, workers=args.workers, cyclegan_run=args.cyclegan_run)
    path = Path(args.out) / ("quick" if args.quick else "full") / "sim2real.png"
    write_figure(f, path)
    print_table(f)
    print(f"figure: {path}; wall time {f['wall_s'] / 60:.1f} min")
    if args.json:
        f = {k: v for k, v in f.items() if not k.startswith("_")}
        f["figure"] = str(path)
        emit_json(_finite(f))
    return 0


def _finite(obj):
    """The figures with every non-finite number as null (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
