"""A StackGAN-style two-stage text-to-image GAN on armlab's captions: train, sample, evaluate.

    armlab stackgan train --data data/sim64 --out runs/stackgan --steps 3000
    armlab stackgan sample --run runs/stackgan --n 16 --prompt "a red sphere on the left of the table" --out s/
    armlab stackgan eval --run runs/stackgan --data data/sim64 --json

Captions are made from each frame's labels (the target's colour and shape, its side and depth, the distractors;
four phrasings per frame, seeded); a word-level vocabulary (RUN/vocab.json) and a small text encoder are built and
pre-trained from scratch (--text-steps), then frozen. Stage I draws a 32 px scene from noise and the caption through
conditioning augmentation (a Gaussian around the sentence embedding, with a KL term); stage II reads stage I's image
and the caption again and draws the 64 px scene (--size). A layout head (on by default; --no-layout for the plain
StackGAN) reads the caption's class and place from the frozen encoder, fitted on the frames' own labels
(--layout-steps): every network sees where-and-what maps of that class and place, as armlab's conditional GAN does,
the frame's own while training and the head's draw when sampling from a prompt. Stage II corrects stage I's enlarged
image (--no-refine: draws anew, as published). With the layout each stage also has a local class loss (--aux-class):
a small classifier learns the shapes from real crops around the target and the generator's crop at the layout's
target must read as the layout's class. Both stages train together, each against its own discriminator
(real, fake, and real images with the wrong caption). The same command after a kill resumes; a larger --steps
continues. `sample` writes stage II's images as an armlab dataset folder (style
'generated', the prompt's class as the label) with grid.png and stage1.png; unknown words of --prompt are read as
<unk>. `eval` reads both stages with the probe: class accuracy against real renders, the fraction of samples on
the prompt's side (side_acc_fake), position error and fid_custom, stage II against stage I.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from armlab_scripts._common import (
    SIDE_MARGIN_HELP,
    UsageError,
    check_side_margin,
    emit_json,
    fmt,
    print_generation_report,
)
from armlab_scripts._trainer import add_trainer_arguments, trainer_config, use_threads
from generative.trainer_defaults import STACKGAN as TRAIN_DEFAULTS

#: The issue's text targets: the probe reads the prompt's class at >= 0.9 of its accuracy on real renders.
TARGETS = {"class_acc_ratio": (">=", 0.9), "pos_err_ratio": ("<=", 2.0), "diversity_ratio": (">=", 0.8)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="stackgan_command", metavar="ACTION")
    sub.required = True
    t = sub.add_parser("train", help="train the two-stage GAN on a dataset's captions; the same command resumes",
                       description="Train a StackGAN into --out (see `armlab stackgan --help`).")
    t.add_argument("--data", required=True, help="armlab dataset folder (labels make the captions)")
    t.add_argument("--out", required=True, help="run folder (created; an existing run resumes / continues)")
    t.add_argument("--size", type=int, default=64, help="stage II's image size, a power of two (default 64; "
                                                        "stage I draws half of it)")
    t.add_argument("--ch", type=int, default=16, help="narrowest channel width of the networks (default 16)")
    t.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    t.add_argument("--kl-weight", type=float, default=1.0, help="conditioning augmentation's KL weight (default 1)")
    t.add_argument("--text-steps", type=int, default=300, help="text encoder pre-training steps (default 300)")
    t.add_argument("--no-layout", action="store_true",
                   help="no layout head: the networks read the caption's embedding only (StackGAN as published)")
    t.add_argument("--no-refine", action="store_true",
                   help="stage II draws its image anew instead of correcting stage I's enlarged one")
    t.add_argument("--aux-class", type=float, default=None, metavar="W",
                   help="weight of the local class loss: a small classifier per stage, trained on real crops around "
                        "the target, must read the layout's class from the generator's crop (default 1 for a new "
                        "run with a layout, 0 without; a resumed run keeps its own)")
    t.add_argument("--layout-steps", type=int, default=400,
                   help="layout head fitting steps on the encoder's embeddings (default 400)")
    t.add_argument("--limit", type=int, default=None, help="use only the first N frames")
    add_trainer_arguments(t, TRAIN_DEFAULTS, ema=True)
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    t.set_defaults(stackgan_func=_train)

    s = sub.add_parser("sample", help="draw stage II images for a prompt into an armlab-format folder",
                       description="Sample a trained StackGAN into --out (see `armlab stackgan --help`).")
    s.add_argument("--run", required=True, help="run folder written by `armlab stackgan train`")
    s.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    s.add_argument("--prompt", default=None,
                   help="caption for every image, e.g. \"a red sphere on the left of the table\" (default: captions "
                        "of training frames' class and side)")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    s.add_argument("--side-margin", type=float, default=None, metavar="M", help=SIDE_MARGIN_HELP)
    s.add_argument("--out", required=True, help="output folder (an armlab dataset of style 'generated')")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    s.add_argument("--no-ema", action="store_true", help="use the trained generators, not their EMA copies")
    s.add_argument("--json", action="store_true", help="print a summary as one JSON object on the last line")
    s.set_defaults(stackgan_func=_sample)

    e = sub.add_parser("eval", help="the probe on both stages: class, side, position error, fid_custom",
                       description="Evaluate a trained StackGAN against an armlab dataset (see `armlab stackgan "
                                   "--help`).")
    e.add_argument("--run", required=True, help="run folder written by `armlab stackgan train`")
    e.add_argument("--data", required=True, help="armlab dataset folder (real images and their labels)")
    e.add_argument("--n", type=int, default=256, help="real frames and prompts compared (default 256)")
    e.add_argument("--seed", type=int, default=0, help="seed of the drawn frames and noise (default 0)")
    e.add_argument("--side-margin", type=float, default=None, metavar="M", help=SIDE_MARGIN_HELP)
    e.add_argument("--quick", action="store_true", help="shorter probe training (250 steps instead of 1000)")
    e.add_argument("--probe-steps", type=int, default=None, help="probe training steps (overrides --quick)")
    e.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    e.add_argument("--no-ema", action="store_true", help="evaluate the trained generators, not their EMA copies")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object on the last line")
    e.set_defaults(stackgan_func=_eval)


def run(args: argparse.Namespace) -> int:
    return args.stackgan_func(args)


def _check_run(run: str) -> None:
    path = Path(run)
    if not path.exists():
        raise UsageError(f"run folder {run!r} does not exist.")
    if not (path / "checkpoint.pt").is_file():
        raise UsageError(f"run folder {run!r} holds no checkpoint.pt: train it with `armlab stackgan train` first.")


def _check_dataset(data: str, why: str) -> None:
    if not Path(data).exists():
        raise UsageError(f"dataset folder {data!r} does not exist.")
    if not (Path(data) / "manifest.json").is_file():
        raise UsageError(f"{data!r} is not an armlab dataset (no manifest.json): {why}.")


def _train(args: argparse.Namespace) -> int:
    from generative.stackgan import train_stackgan

    train = trainer_config(args, TRAIN_DEFAULTS)
    if args.size < 16 or args.size & (args.size - 1):
        raise UsageError(f"--size must be a power of two of at least 16 pixels, got {args.size}.")
    if args.ch < 1 or args.text_steps < 1 or args.layout_steps < 1:
        raise UsageError(f"--ch, --text-steps and --layout-steps must be at least 1, got {args.ch}, "
                         f"{args.text_steps} and {args.layout_steps}.")
    if not args.lr > 0 or args.kl_weight < 0:
        raise UsageError(f"--lr must be > 0 and --kl-weight >= 0, got {args.lr} and {args.kl_weight}.")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}.")
    _check_dataset(args.data, "the captions come from its labels")
    use_threads(args.threads)
    s = train_stackgan(args.data, train, size=args.size, ch=args.ch, lr=args.lr, kl_weight=args.kl_weight,
                       text_steps=args.text_steps, limit=args.limit, layout=not args.no_layout,
                       layout_steps=args.layout_steps, refine=not args.no_refine, aux_class=args.aux_class)
    sps = f"{s['images_per_s']:.1f} images/s" if s.get("images_per_s") else "speed not measured"
    print(f"stackgan ({s['stage1']} -> {s['size']} px, {s['n_train']} frames) -> {s['out']}: step {s['steps']} "
          f"({s['steps_run']} run now, {s['wall_time_s']:.1f} s, {sps})")
    if s.get("losses"):
        print("last losses: " + ", ".join(f"{k} {v:.4g}" for k, v in s["losses"].items()))
    if args.json:
        emit_json({k: v for k, v in s.items() if k != "history"})
    return 0


def _sample(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from generative.data import write_generated, write_grid
    from generative.stackgan import load_stackgan, sample_stackgan
    from generative.text import caption_conditions

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}.")
    check_side_margin(args.side_margin)
    _check_run(args.run)
    model = load_stackgan(args.run, args.device, ema=not args.no_ema)
    unknown = model.vocab.unknown(args.prompt) if args.prompt is not None else []
    if unknown:
        print(f"words the run never saw (read as <unk>): {', '.join(unknown)}", file=sys.stderr)
    x1, x2, prompts = sample_stackgan(model, args.n, args.prompt, args.seed, side_margin=args.side_margin)
    ids = [caption_conditions(p, model.cfg.classes)["class_id"] for p in prompts]
    out = Path(args.out)
    extra = {"seed": args.seed, "run": str(args.run), "step": model.step, "model": "stackgan",
             "prompt": prompts[0] if len(set(prompts)) == 1 else prompts, "ema": not args.no_ema}
    if model.layout is not None:
        from generative.text import side_margin

        extra["side_margin"] = side_margin(args.side_margin)
    write_generated(out, x2, None if None in ids else np.array(ids), None, classes=model.cfg.classes,
                    extra_settings=extra)
    grid = write_grid(out, x2)
    stage1 = write_grid(out, x1, name="stage1.png")
    print(f"{args.n} images from {args.run} (step {model.step}) -> {out} (armlab dataset, style 'generated'), "
          f"{grid} and {stage1} (stage I)")
    if args.json:
        emit_json({"out": str(out), "n": args.n, "run": str(args.run), "step": model.step, "grid": str(grid),
                   "stage1_grid": str(stage1), "prompts": prompts[:8]})
    return 0


def _eval(args: argparse.Namespace) -> int:
    from generative.stackgan import evaluate_stackgan

    if args.n < 2:
        raise UsageError(f"--n must be at least 2, got {args.n}.")
    if args.probe_steps is not None and args.probe_steps < 1:
        raise UsageError(f"--probe-steps must be at least 1, got {args.probe_steps}.")
    check_side_margin(args.side_margin)
    _check_dataset(args.data, "eval needs labelled frames")
    _check_run(args.run)
    use_threads(args.threads)
    r = evaluate_stackgan(args.run, args.data, n=args.n, seed=args.seed, quick=args.quick,
                          probe_steps=args.probe_steps, device=args.device, ema=not args.no_ema,
                          side_margin=args.side_margin)
    for name in ("stage2", "stage1"):
        s = r[name]
        print_generation_report(s, TARGETS, title=f"{args.run} {name} (step {r['steps']}) against {args.data}")
        print(f"  prompts: the probe finds the target on the prompt's side in {fmt(s.get('side_acc_fake'), '.1%')} "
              f"of samples ({fmt(s.get('side_acc_real'), '.1%')} of real renders with their captions)")
    b = r["stage2_beats_stage1"]
    print(f"stage II beats stage I: position error {b['pos_err_fake_norm']}, fid_custom {b['fid_custom']}")
    if args.json:
        emit_json(r)
    return 0
