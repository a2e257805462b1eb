"""CycleGAN between sim images and real ones: train, translate datasets, folders and videos, measure the gap closed.

    armlab cyclegan train --sim data/sim --real data/real --out runs/cyclegan --steps 1500 --base 16 --d-base 32
    armlab cyclegan train --sim data/sim --real photos/ --out runs/cg_task --steps 1500 --task-weight 0.5
    armlab cyclegan train --sim data/sim --real data/real --out runs/cyclegan --steps 3000 --base 16 --d-base 32
    armlab cyclegan train --sim data/sim --real data/real --out runs/look --steps 1500 --generator look --d-base 16
    armlab cyclegan train --sim data/sim --real data/real --out runs/cut --steps 1500 --method cut --generator look
    armlab cyclegan translate --run runs/cyclegan --in data/sim --out data/sim2real          # labels kept
    armlab cyclegan translate --run runs/cyclegan --in photos/ --out photos_sim --direction real2sim
    armlab cyclegan translate --run runs/cyclegan --in rollout.webm --out rollout_real.webm --side-by-side
    armlab cyclegan eval --run runs/cyclegan --sim data/sim --real data/real --json

train: the real domain may be any folder of images (or an armlab dataset); images are center-cropped and resized to
--size. The run folder holds checkpoint.pt, config.json, log.csv, samples/ (rows of sim, G(sim), real, F(real)) and
tb/ (TensorBoard). The same command after a kill resumes exactly; a larger --steps continues a finished run (the
third example). At 64 px with batch 4 on one CPU thread a step takes about 0.5 s with --base 16 --d-base 32 and
about 2 s with the defaults (--base 32 --d-base 64); --threads 1 is fastest on a busy machine.
--generator look replaces both ResNet generators with the light camera-model translator (colour, tone curve,
vignetting, blur and sensor noise plus a small residual net; about 21 k parameters, --base 16 by default), trained
with the same adversarial and cycle terms (not the identity term, which would pin a camera look to the identity)
and much faster on a CPU.
--pairs N adds a paired term for the first N frames of both folders, when they show the same scenes (labelled real
frames whose scenes are re-rendered in sim): |G(sim) - real|_1, weight --paired-weight (pix2pix's term).
--method cut (or fastcut) trains the one-sided CUT (Park et al. 2020) instead of CycleGAN: one generator and one
discriminator, and in place of the cycle a patch-wise contrastive loss (PatchNCE: each patch of G(x) must match its
own patch of x among the image's other patches, on the generator's encoder features); fastcut weights it 10 and skips
the identity version on real images. A CUT run translates sim2real only. Sample rows: sim, G(sim), real, G(real).
--task-weight > 0 adds the task-consistency term: a probe trained on the (labelled) sim dataset must read the same
target position from x and G(x).

translate: --in an armlab dataset (its labels, depth and segmentation are copied, the RGB images translated, and a
new manifest with their checksums written), a plain image folder (same relative names) or a video (.webm, .mp4,
.gif, ...; --side-by-side puts the original on the left).

eval: the sim-to-real gap closed by the translation, for a small target-position regressor trained on sim, on
translated sim and on real images (the same figures as `armlab sim2real eval`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from armlab_scripts._common import UsageError, emit_json
from armlab_scripts._trainer import add_trainer_arguments, trainer_config, use_threads
from armlab_scripts.sim2real import add_eval_arguments, run_eval
from generative.trainer_defaults import CYCLEGAN as TRAIN_DEFAULTS

GENERATORS = ("resnet", "look")  # generative.cyclegan.GENERATORS, without importing torch to build the parser
METHODS = ("cycle", "cut", "fastcut")  # generative.cyclegan.METHODS

VIDEO_INPUTS = (".webm", ".mp4", ".gif", ".avi", ".mov", ".mkv", ".m4v")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cyclegan_command", metavar="ACTION")
    sub.required = True

    t = sub.add_parser("train", help="train (or resume) a CycleGAN run",
                       description="Train a CycleGAN between --sim and --real into --out (see `armlab cyclegan "
                                   "--help`).")
    t.add_argument("--sim", required=True, help="sim images: an armlab dataset (or any image folder)")
    t.add_argument("--real", required=True, help="real images: any image folder or armlab dataset")
    t.add_argument("--out", required=True, help="run folder (created; a rerun resumes)")
    t.add_argument("--size", type=int, default=64, help="image size in pixels, a multiple of 4 (default 64)")
    t.add_argument("--task-weight", type=float, default=0.0,
                   help="weight of the task-consistency term per pixel of probe disagreement (default 0: off)")
    t.add_argument("--generator", default="resnet", choices=GENERATORS,
                   help="resnet (CycleGAN's, default) or look: the light camera-model translator (colour, tone, "
                        "vignette, blur and noise + a small residual net), much faster on CPU")
    t.add_argument("--method", default="cycle", choices=METHODS,
                   help="cycle (CycleGAN, default), or the one-sided cut / fastcut: one generator, PatchNCE in place "
                        "of the cycle (translates sim2real only)")
    t.add_argument("--nce-weight", type=float, default=None,
                   help="with --method cut/fastcut: weight of the PatchNCE term (default 1 for cut, 10 for fastcut)")
    t.add_argument("--base", type=int, default=None, help="generator width (default 32; 16 with --generator look)")
    t.add_argument("--n-blocks", type=int, default=6, help="generator residual blocks (default 6; resnet only)")
    t.add_argument("--d-base", type=int, default=64, help="discriminator width (default 64)")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate of generators and discriminators (default 2e-4; 1e-3 with --generator look)")
    t.add_argument("--lr-steps", type=int, default=None,
                   help="length of the LR schedule (default --steps): constant for its first half, then linear to 0")
    t.add_argument("--sim-limit", type=int, default=None, help="use only the first N sim images")
    t.add_argument("--real-limit", type=int, default=None, help="use only the first N real images")
    t.add_argument("--pairs", type=int, default=0,
                   help="the first N frames of --sim and --real show the same scenes (labelled real frames "
                        "re-rendered in sim; datasets of one seed): adds pix2pix's L1 term |G(sim) - real| for them "
                        "(default 0: unpaired)")
    t.add_argument("--paired-weight", type=float, default=10.0, help="weight of the paired L1 term (default 10)")
    t.add_argument("--probe-steps", type=int, default=None,
                   help="training steps of the task-consistency probe (default 1000; cached per dataset)")
    add_trainer_arguments(t, TRAIN_DEFAULTS, ema=True, help={
        "steps": "total training steps", "batch_size": "images per domain per step (default {batch_size})",
        "seed": "seed of the weights, batches and augmentation (default 0)",
        "ema_decay": "EMA of the generators (default {ema_decay}; 0: off)",
        "sample_every": "write a sample grid every N steps (default 500)",
        "threads": "torch CPU threads (default: torch's choice; 1 is fastest on a busy machine)"})
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    t.set_defaults(cyclegan_func=_train)

    tr = sub.add_parser("translate", help="translate a dataset, an image folder or a video with a trained run",
                        description="Translate --in into --out with the generators of --run.")
    tr.add_argument("--run", required=True, help="CycleGAN or CUT run folder")
    tr.add_argument("--in", dest="inp", required=True, help="armlab dataset, image folder or video file")
    tr.add_argument("--out", required=True, help="output folder (datasets, folders) or video file")
    tr.add_argument("--direction", default="sim2real", choices=("sim2real", "real2sim"),
                    help="sim2real (G, default) or real2sim (F; CycleGAN runs only)")
    tr.add_argument("--side-by-side", action="store_true", help="videos: original | translation in each frame")
    tr.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    tr.add_argument("--device", default="cpu", help="cpu (default), cuda, auto, ...")
    tr.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    tr.set_defaults(cyclegan_func=_translate)

    e = sub.add_parser("eval", help="gap closure and PSNR/SSIM of a run (same as `armlab sim2real eval`)",
                       description="Measure the sim-to-real gap closed by the run's translation.")
    add_eval_arguments(e)
    e.set_defaults(cyclegan_func=run_eval)


def run(args: argparse.Namespace) -> int:
    return args.cyclegan_func(args)


def _train(args: argparse.Namespace) -> int:
    from generative.cyclegan import train_cyclegan

    train = trainer_config(args, TRAIN_DEFAULTS, tty_progress=False)
    if args.task_weight < 0:
        raise UsageError(f"--task-weight must be >= 0, got {args.task_weight}.")
    if args.nce_weight is not None and (args.method == "cycle" or not args.nce_weight >= 0):
        raise UsageError(f"--nce-weight must be >= 0 and goes with --method cut or fastcut, got {args.nce_weight} "
                         f"with --method {args.method}.")
    for name in ("sim", "real"):
        if not Path(getattr(args, name)).is_dir():
            raise UsageError(f"--{name} {getattr(args, name)!r} is not a folder.")
    use_threads(args.threads)
    s = train_cyclegan(
        args.sim, args.real, train, size=args.size, task_weight=args.task_weight, base=args.base,
        n_blocks=args.n_blocks, d_base=args.d_base, lr=args.lr, lr_steps=args.lr_steps, sim_limit=args.sim_limit,
        real_limit=args.real_limit, probe_steps=args.probe_steps, generator=args.generator, pairs=args.pairs,
        paired_weight=args.paired_weight, method=args.method, nce_weight=args.nce_weight,
    )
    ips = f"{s['images_per_s']:.1f} images/s" if s["images_per_s"] else "no timing"
    name = "cyclegan" if args.method == "cycle" else args.method
    print(f"{name} {args.out}: {s['steps']} steps ({s['steps_run']} in this call, {s['wall_time_s']:.1f} s, {ips}; "
          f"{s['n_sim']} sim and {s['n_real']} real images, task weight {s['task_weight']:g})")
    if s["losses"]:
        print("losses: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(s["losses"].items())))
    if args.json:
        emit_json({k: v for k, v in s.items() if k != "losses"} | {f"loss_{k}": v for k, v in s["losses"].items()})
    return 0


def _translate(args: argparse.Namespace) -> int:
    from generative.cyclegan import translate_dataset, translate_video

    src = Path(args.inp)
    if not src.exists():
        raise UsageError(f"--in {args.inp!r} does not exist.")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if src.is_file():
        if src.suffix.lower() not in VIDEO_INPUTS:
            raise UsageError(f"--in {args.inp!r} is a file but not a video ({', '.join(VIDEO_INPUTS)}); "
                             "pass a folder to translate images.")
        s = translate_video(args.run, src, args.out, direction=args.direction, side_by_side=args.side_by_side,
                            batch_size=args.batch_size, device=args.device)
        print(f"translated {s['frames']} frames ({args.direction}) of {args.inp} -> {s['out']} "
              f"({s['width']}x{s['height']}, {s['fps']:g} fps)")
    else:
        if args.side_by_side:
            raise UsageError("--side-by-side is for videos; --in is a folder.")
        s = translate_dataset(args.run, src, args.out, direction=args.direction, batch_size=args.batch_size,
                              device=args.device, progress=True)
        what = "armlab dataset" if s["kind"] == "armlab" else "image folder"
        extra = f", {s['copied']} label/depth/seg files copied, manifest written" if s["kind"] == "armlab" else ""
        print(f"translated {s['images']} images ({args.direction}) of the {what} {args.inp} -> {s['out']}{extra}")
    if args.json:
        emit_json(s)
    return 0
