"""The demo's sim-to-real stage: the look translator trained inside the demo's budget, its translations, a translated
rollout video, and a small downstream table (the camera model trained on sim, histogram-matched sim, translated
sim and real frames, tested on held-out real frames). One seed and small budgets: the full table with intervals is
`armlab bench sim2real` (docs/benchmarks.md). Also the demo's dataset helper, `demo_dataset`, which every stage that
renders a dataset uses."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from armlab_scripts._demo_figures import class_sheet, write_png

LAYOUT = ("camera", "distractors")  #: the sim and photo datasets vary the scenes, not their looks
ROWS = (("sim", "sim"), ("histogram", "sim, histogram matched"), ("translated", "sim -> real (look translator)"),
        ("real", "real (oracle)"))


def demo_dataset(root: Path, cfg, workers: int, progress: bool) -> dict:
    """Generate (resume, or re-finish) the dataset ``cfg`` in ``root``; a folder an earlier demo made with other
    settings is deleted and made anew. Any other problem with the folder is raised, and the folder kept."""
    from robot_env.dataset.generation import generate, made_with_other_settings

    if made_with_other_settings(root, cfg):
        shutil.rmtree(root)
    return generate(root, cfg, workers=workers, progress=progress)


def stage_sim2real(demo) -> dict:
    import cv2

    from generative.cyclegan import TRAIN_DEFAULTS, load_generators, train_cyclegan, translate_images
    from generative.metrics import psnr
    from generative.sim2real import Row, histogram_match, load_labelled, run_table, summarize
    from generative.training import TrainConfig
    from robot_env.dataset import DatasetConfig, Scene
    from robot_env.video import VideoWriter

    s = demo.settings["sim2real"]
    sim_dir, photo_dir = demo.out / "data" / "sim_plain", demo.out / "data" / "photo"
    for root, style in ((sim_dir, "sim"), (photo_dir, "photo")):
        demo_dataset(root, DatasetConfig(n=s["n"], size=s["size"], seed=s["seed"], style=style, randomize=LAYOUT), 2,
                 demo.progress)
    cut = int(s["n"] * 0.8)
    run = demo.out / "look"
    train = TrainConfig(out=run, steps=s["steps"], **{**TRAIN_DEFAULTS, "batch_size": s["batch_size"],
                                                      "ema_decay": 0.99},
                        seed=s["seed"], device="cpu", progress=demo.progress, tensorboard=False, sample_every=10**9,
                        checkpoint_every=max(50, s["steps"] // 4))
    summary = train_cyclegan(sim_dir, photo_dir, train, size=s["size"], generator="look", d_base=16, lr=1e-3,
                             sim_limit=cut, real_limit=s["n_real"])
    gens = load_generators(run)

    sim, sim_idx = load_labelled(sim_dir, s["size"])
    real, real_idx = load_labelled(photo_dir, s["size"])
    seen = real.subset(real_idx < s["n_real"]).images
    train_sets = {"sim": sim.subset(sim_idx < cut), "real": real.subset(real_idx < cut)}
    train_sets["histogram"] = train_sets["sim"].with_images(histogram_match(train_sets["sim"].images, seen))
    train_sets["translated"] = train_sets["sim"].with_images(translate_images(gens, train_sets["sim"].images))
    test = real.subset(real_idx >= cut)
    table = run_table(train_sets, {"real": test}, [Row(k, k) for k, _ in ROWS], seeds=(s["seed"],),
                      steps=s["downstream_steps"], batch_size=32, workers=2)
    fig = summarize(table, n_boot=200, seed=s["seed"])

    # translations of held-out frames: sim, G(sim), the paired real frame
    frames = list(range(cut, cut + 6))

    def read(root: Path, i: int) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(root / "rgb" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)

    sim_imgs = np.stack([read(sim_dir, i) for i in frames])
    real_imgs = np.stack([read(photo_dir, i) for i in frames])
    trans = translate_images(gens, sim_imgs)
    write_png(demo.out / "sim2real_samples.png", class_sheet([sim_imgs, trans, real_imgs], scale=3))
    psnr_sim = float(np.mean([psnr(a, b) for a, b in zip(sim_imgs, real_imgs)]))
    psnr_trans = float(np.mean([psnr(a, b) for a, b in zip(trans, real_imgs)]))
    # a short rollout in the dataset's scene (the arm sweeping between two poses), translated frame by frame
    scene = Scene(DatasetConfig(n=1, size=s["size"], seed=s["seed"], randomize=LAYOUT))
    try:
        roll = np.stack(scene.sweep(cut, s["video_frames"]))
    finally:
        scene.close()
    video = demo.out / "sim2real_rollout.webm"
    with VideoWriter(video, fps=24) as writer:
        for a, b in zip(roll, translate_images(gens, roll)):
            writer.write(cv2.resize(np.concatenate([a, b], axis=1), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST))
    rows = fig["rows"]
    lines = ["| trained on | position error (px) | class accuracy | gap closure (px) |", "|---|---|---|---|"]
    for k, label in ROWS:
        r = rows[k]
        c = f"{r['closure_px']['mean']:.2f}" if "closure_px" in r else "-"
        lines.append(f"| {label} | {r['error_px']['mean']:.2f} | {r['accuracy']['mean']:.2f} | {c} |")
    ips = summary.get("images_per_s") or float("nan")
    figures = {"PSNR sim vs paired real": f"{psnr_sim:.1f} dB",
               "PSNR translated vs paired real": f"{psnr_trans:.1f} dB",
               "translator steps": f"{s['steps']:,}", "translator images/s": f"{ips:.0f}",
               "held-out real frames": str(fig["n_test"])}
    closure = rows["translated"].get("closure_px", {}).get("mean")
    return {"line": f"look translator {s['steps']:,} steps: PSNR {psnr_sim:.1f} -> {psnr_trans:.1f} dB against the "
                    f"paired real frames; camera model trained on translated sim closes "
                    f"{closure if closure is not None else float('nan'):.2f} of the gap (one seed); "
                    "sim2real_rollout.webm",
            "figures": figures, "table": "\n".join(lines), "psnr_sim": psnr_sim, "psnr_trans": psnr_trans,
            "closure": closure, "files": ["sim2real_samples.png", "sim2real_rollout.webm", "look/checkpoint.pt"]}
