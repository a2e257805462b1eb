"""DCGAN and conditional GAN on armlab camera images: train, sample, evaluate.

    armlab gan train --data data/sim64 --out runs/gan/cgan --steps 2000 --cond class,target
    armlab gan train --data data/sim64 --out runs/gan/cgan --steps 4000 --cond class,target   # continues to 4000
    armlab gan train --data data/photos --out runs/gan/dcgan --steps 5000                     # unconditional
    armlab gan sample --run runs/gan/cgan --n 64 --out runs/gan/samples              # conditions drawn from the data
    armlab gan sample --run runs/gan/cgan --n 16 --class cube --target 0.4,0.6 --out runs/gan/cubes
    armlab gan sample --run runs/stackgan --prompt "a red sphere on the left of the table" --out runs/gan/spheres
    armlab gan eval --run runs/gan/cgan --data data/sim64 --json
    armlab gan export --run runs/gan/cgan --data data/sim64 --out weights/cgan --metrics eval.json   # sampling only
    armlab gan train --arch stylegan2 --ada --data data/sim64 --out runs/gan/sg2 --steps 2000 --cond class,target
    armlab gan train --arch progan --phase-steps 500 --data data/sim64 --out runs/gan/pg --steps 2000 --cond target
    armlab gan latent --run runs/gan/sg2 --out runs/gan/sg2-latent --project frame.png
    armlab gan ada --run runs/gan/sg2 --json               # p's peak, level and whether it settled; RUN/ada.png
    armlab gan eval --run runs/gan/sg2 --data data/sim64 --snapshots   # each --snapshot-every step, and the best

--cond: class (the target object's shape: cube, cylinder, sphere), target (where the target is in the image,
pixel_norm in [0, 1]) or class,target; leave it out for an unconditional DCGAN. The generator is a DCGAN
generator, the discriminator a spectrally normalised projection discriminator, trained with the hinge loss, Adam
(2e-4, betas 0.5/0.999) and an EMA of the generator (see generative/gan.py).

A run folder holds config.json, checkpoint.pt (the same command after a kill resumes; a larger --steps
continues a finished run), log.csv, tb/ (TensorBoard), samples/ (grids: one class per row, the target moving left
to right) and summary.json. `sample` writes DIR/rgb/, DIR/labels/ and DIR/manifest.json in armlab's dataset format
(the requested conditions as labels, "style": "generated") and DIR/grid.png. `eval` trains (once per dataset,
cached) a probe network on the dataset and reports how well generated images follow the conditions
(class_acc_ratio, pos_err_ratio: fake against real), their diversity (diversity_ratio) and fid_custom, a Frechet
distance in the probe's feature space (NOT comparable with published FID). `export` writes the generator's EMA
weights (float16), the run's settings and PROVENANCE.json (the dataset manifest's SHA-256, the training settings,
the metrics of an `eval --json` output, the commands that made it) into a small folder that `sample` and `eval`
read like a run (it cannot be trained on).

--arch: dcgan (the conditional GAN above, the default), stylegan2 (mapping network, modulated convolutions, noise
inputs, skip G, residual D, lazy R1; with --ada, adaptive augmentation of D's inputs, p and r_t in log.csv, and
`ada` reports and plots how p moved: it has settled when over the last quarter of the steps it stays within 0.1
and its fitted trend moves it by at most 0.05) or
progan (growing 8 -> 16 -> 32 -> 64 px with fade-in, --phase-steps per resolution; alpha and res in log.csv,
D accuracy per phase in the summary). `latent` writes interp_z.webm (slerp in z), truncation.png (one column per
psi) and, for stylegan2, interp_w.webm (lerp in w), mixing.png (coarse styles from the row's source, fine from the
column's) and, with --project IMAGE, projection.png (the image beside its reconstruction from an optimised w).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from armlab_scripts._common import UsageError, emit_json, fmt, print_generation_report
from armlab_scripts._export import add_export_arguments
from armlab_scripts._trainer import add_trainer_arguments, trainer_config, use_threads
from generative.trainer_defaults import GAN as TRAIN_DEFAULTS
from robot_env.io.errors import ParamError

PSI_HELP = ("truncation trick: stylegan2 pulls each w towards the mean w of its own condition, w_avg + psi "
            "(w - w_avg); the other archs scale z (default 1: none; lower: more typical, less varied images)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="gan_command", metavar="ACTION")
    sub.required = True

    t = sub.add_parser("train", help="train a (conditional) GAN; the same command resumes",
                       description="Train a DCGAN / conditional GAN into --out (see `armlab gan --help`).")
    t.add_argument("--data", required=True, help="armlab dataset folder (or, unconditional, any image folder)")
    t.add_argument("--out", required=True, help="run folder (created; an existing run resumes / continues)")
    t.add_argument("--cond", default="", help="class, target or class,target (default: unconditional)")
    t.add_argument("--size", type=int, default=64, help="image size, a power of two (default 64)")
    t.add_argument("--arch", default=None,
                   help="dcgan (the conditional GAN; default, and a resumed run keeps its own), stylegan2 or progan")
    t.add_argument("--base", type=int, default=32, help="base width of G and D (default 32)")
    t.add_argument("--loss", default=None, choices=("hinge", "ns"),
                   help="dcgan: hinge (default) or non-saturating; stylegan2 and progan use the non-saturating loss")
    t.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate of G and D (default: dcgan 2e-4, stylegan2 2e-3, progan 1e-3)")
    t.add_argument("--w-dim", type=int, default=128, help="stylegan2: width of w (default 128)")
    t.add_argument("--map-depth", type=int, default=2, help="stylegan2: layers of the mapping network (default 2)")
    t.add_argument("--r1-gamma", type=float, default=0.05,
                   help="stylegan2, progan: weight of the lazy R1 penalty, every 16 steps (default 0.05; 0 = off)")
    t.add_argument("--ada", action="store_true",
                   help="stylegan2, progan: adaptive discriminator augmentation, p steered by r_t = E[sign D(real)]")
    t.add_argument("--ada-target", type=float, default=0.6, help="ADA: the target of r_t (default 0.6)")
    t.add_argument("--ada-kimg", type=float, default=500.0,
                   help="ADA: thousands of images for p to go from 0 to 1 (default 500)")
    t.add_argument("--ada-pipeline", default="basic", choices=("basic", "full"),
                   help="ADA: basic (translation, isotropic scaling, colour, cutout; default) or full (also "
                        "horizontal flips, rotations and anisotropic scaling, the target's position moving with "
                        "the image); a resumed run must give its own")
    t.add_argument("--phase-steps", type=int, default=1000,
                   help="progan: steps per resolution phase, 8 -> 16 -> 32 -> 64 px (default 1000; the first half of "
                        "each later phase fades the new layers in)")
    t.add_argument("--augment", default="none",
                   help="DiffAugment for D: color, translation, color,translation or none (default none; "
                        "try color,translation on a few hundred images)")
    t.add_argument("--no-spatial-cond", action="store_true",
                   help="without the where-and-what maps (class-channel bump at the target) that G and D get "
                        "with the target condition (an ablation; a resumed run keeps its own setting)")
    t.add_argument("--aux-class", type=float, default=None, metavar="W",
                   help="weight of the local class loss (AC-GAN style): a small classifier trained on real crops "
                        "around the target must read the requested class from G's crop; needs --cond class,target "
                        "(default for a new run with both conditions: 2 for stylegan2, 1 for the others; 0 without "
                        "them; a resumed run keeps its own; 0 turns it off)")
    t.add_argument("--aux-augment", action=argparse.BooleanOptionalAction, default=None,
                   help="the local classifier and G's class loss see each crop through random views (shift, scale, "
                        "flip, colour, noise), so G cannot satisfy the classifier with pixels only it reads "
                        "(default: on for a new stylegan2 run, off for the others; a resumed run keeps its own)")
    t.add_argument("--aux-fake", action=argparse.BooleanOptionalAction, default=None,
                   help="the local classifier also learns G's crops as a class of their own (a local K+1 "
                        "classifier), so G's object must look like a real one of the requested class "
                        "(default: on for a new stylegan2 run, off for the others; a resumed run keeps its own)")
    t.add_argument("--limit", type=int, default=None, help="use only the first N frames")
    add_trainer_arguments(t, TRAIN_DEFAULTS, snapshots=True)
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    t.set_defaults(gan_func=_train)

    s = sub.add_parser("sample", help="draw images into an armlab-format dataset folder and a grid PNG",
                       description="Sample a trained GAN into --out (see `armlab gan --help`).")
    s.add_argument("--run", required=True, help="run folder written by `armlab gan train`")
    s.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--cond", default=None,
                   help="the run's conditions, checked against it (class, target, class,target or none)")
    s.add_argument("--class", dest="class_id", default=None,
                   help="class name or id for every image (default: drawn from the training labels)")
    s.add_argument("--target", default=None, metavar="U,V",
                   help="target position pixel_norm for every image, e.g. 0.4,0.6 (default: from the training labels)")
    s.add_argument("--prompt", default=None, metavar="TEXT",
                   help='a caption for every image, e.g. "a red sphere on the left of the table": for a text-'
                        'conditioned run (`armlab stackgan train`); a StackGAN run without it draws training captions')
    s.add_argument("--seed", type=int, default=0, help="seed of the noise and drawn conditions (default 0)")
    s.add_argument("--psi", type=float, default=1.0,
                   help=PSI_HELP)
    s.add_argument("--side-margin", type=float, default=None, metavar="M",
                   help="text (StackGAN) runs: keep each drawn target at least M image widths from the "
                        "left/centre/right cuts (default 0.04; see `armlab stackgan sample --help`)")
    s.add_argument("--out", required=True, help="output folder (an armlab dataset of style 'generated')")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    s.add_argument("--no-ema", action="store_true", help="use the trained generator, not its EMA copy")
    s.add_argument("--json", action="store_true", help="print a summary as one JSON object on the last line")
    s.set_defaults(gan_func=_sample)

    e = sub.add_parser("eval", help="probe metrics of a run against a dataset",
                       description="Evaluate a trained GAN against an armlab dataset (see `armlab gan --help`).")
    e.add_argument("--run", required=True, help="run folder written by `armlab gan train`")
    e.add_argument("--data", required=True, help="armlab dataset folder (real images and their labels)")
    e.add_argument("--quick", action="store_true", help="shorter probe training (250 steps instead of 1000)")
    e.add_argument("--n", type=int, default=500, help="real and generated images compared (default 500)")
    e.add_argument("--seed", type=int, default=0, help="seed of the drawn frames and noise (default 0)")
    e.add_argument("--probe-steps", type=int, default=None, help="probe training steps (overrides --quick)")
    e.add_argument("--psi", type=float, default=1.0,
                   help=PSI_HELP)
    e.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    e.add_argument("--no-ema", action="store_true", help="evaluate the trained generator, not its EMA copy")
    e.add_argument("--snapshots", action="store_true", help="evaluate every snapshot the run kept (train "
                   "--snapshot-every) on the same frames and noise, name the step of the lowest fid_custom and plot "
                   "them (RUN/snapshots.png)")
    e.add_argument("--frames", choices=("all", "train", "heldout"), default="all",  # generative.gan.evaluate.FRAMES
                   help="which real frames to draw: all (default), train (those the run trained on: the first "
                   "--limit frames of its dataset) or heldout (the rest); train against heldout at the same --n "
                   "shows whether the generator learned its frames or the scenes")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object on the last line")
    e.set_defaults(gan_func=_eval)

    la = sub.add_parser("latent", help="interpolation videos, truncation and style-mixing grids, projection",
                        description="Explore a trained generator's latent space into --out (see `armlab gan --help`).")
    la.add_argument("--run", required=True, help="run folder written by `armlab gan train`")
    la.add_argument("--out", required=True, help="output folder (created)")
    la.add_argument("--seed", type=int, default=0, help="seed of the latents and the condition (default 0)")
    la.add_argument("--n-frames", type=int, default=48, help="frames of each interpolation video (default 48)")
    la.add_argument("--psi", default=None, help="truncation values, comma-separated (default 1,0.7,0.5,0)")
    la.add_argument("--project", default=None, metavar="IMAGE",
                    help="stylegan2: optimise a w whose image reconstructs IMAGE (projection.png, its error)")
    la.add_argument("--project-steps", type=int, default=200, help="optimisation steps of --project (default 200)")
    la.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    la.add_argument("--json", action="store_true", help="print what was written as one JSON object on the last line")
    la.set_defaults(gan_func=_latent)

    a = sub.add_parser("ada", help="how ADA's p moved over a run: its peak, its level, whether it settled; a plot",
                       description="Report how adaptive augmentation's p and r_t moved over a run trained with "
                                   "--ada, and plot them against the step (see `armlab gan --help`).")
    a.add_argument("--run", required=True, help="run folder written by `armlab gan train --ada`")
    a.add_argument("--window", type=float, default=0.25,
                   help="share of the steps, at the end, over which p is judged (default 0.25); p has settled when "
                        "over it p stays within 0.1 and its fitted trend moves it by at most 0.05")
    a.add_argument("--plot", default=None, metavar="PNG", help="where to write the plot (default RUN/ada.png)")
    a.add_argument("--strength", default=None, metavar="DATA",
                   help="stylegan2: also measure r = E[sign D(aug(x))] of the run's last D on its training frames of "
                        "DATA and on frames it never saw, per pipeline (basic, full) at each --p: how strongly each "
                        "pipeline holds D back, and how much better D knows its training frames")
    a.add_argument("--p", default="0,0.25,0.5,0.75,1", help="with --strength: the p to measure at (default "
                                                             "0,0.25,0.5,0.75,1)")
    a.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    a.set_defaults(gan_func=_ada)

    x = sub.add_parser("export", help="the generator's weights, settings and provenance, for sampling only",
                       description="Export a trained GAN's EMA generator into a small folder (see `armlab gan "
                                   "--help`).")
    add_export_arguments(x, "armlab gan train", "armlab gan eval")
    x.set_defaults(gan_func=_export)


def run(args: argparse.Namespace) -> int:
    return args.gan_func(args)


def _parse_cond(text: str | None) -> tuple[str, ...]:
    from generative.gan import parse_cond

    try:
        return parse_cond(text)
    except ParamError as exc:
        raise UsageError(f"{exc.render('--cond')}.") from None


def _train(args: argparse.Namespace) -> int:
    from generative.gan import check_size, parse_augment, train_gan

    train = trainer_config(args, TRAIN_DEFAULTS)
    if args.base < 1:
        raise UsageError(f"--base must be at least 1, got {args.base}.")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}.")
    check_size(args.size)
    cond = _parse_cond(args.cond)
    augment = parse_augment(args.augment)
    if not Path(args.data).exists():
        raise UsageError(f"dataset folder {args.data!r} does not exist.")
    arch_opts = _arch_options(args)
    use_threads(args.threads)
    s = train_gan(args.data, train, cond, size=args.size, g_base=args.base, d_base=args.base,
                  loss=args.loss or "hinge", lr=args.lr, augment=augment,
                  spatial_cond=False if args.no_spatial_cond else None, aux_class=args.aux_class,
                  aux_augment=args.aux_augment, aux_fake=args.aux_fake,
                  limit=args.limit, **arch_opts)
    what = ",".join(s["cond"]) or "unconditional"
    if s.get("arch"):
        what = f"{s['arch']}, {what}"
    ips = f"{s['images_per_s']:.0f} images/s" if s["images_per_s"] else "images/s not measured"
    print(f"GAN ({what}, {s['size']} px, {s['n_train']} frames) -> {s['out']}: step {s['steps']} "
          f"({s['steps_run']} run now from {s['start_step']}, {s['wall_time_s']:.1f} s, {ips})")
    if s.get("losses"):
        print("last losses: " + ", ".join(f"{k} {v:.4g}" for k, v in s["losses"].items()))
    if "ada_p" in s:
        a = s.get("ada")
        settled = (f"; from step {a['from_step']} p {a['p_min']:.2f}-{a['p_max']:.2f}, trend {a['p_trend']:+.2f}: "
                   + ("settled" if a["settled"] else "not settled") + " (`armlab gan ada` plots it)") if a else ""
        print(f"ADA: p {s['ada_p']:.3f}, r_t {s['ada_rt']:.3f}{settled}")
    for ph in s.get("phases", []):
        print(f"phase {ph['phase']} ({ph['res']} px): {ph['steps']} steps, D accuracy {ph['d_acc']:.3f}, "
              f"alpha {ph['alpha_end']:.2f} at its end")
    if args.json:
        emit_json({k: v for k, v in s.items() if k != "history"})
    return 0


def _arch_options(args: argparse.Namespace) -> dict:
    """The architecture and its settings from the flags; a `UsageError` for a value out of range or a flag of
    another architecture."""
    from generative.gan import ARCHS

    arch = args.arch
    if arch is not None and arch not in ARCHS:
        raise UsageError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}.")
    if args.loss is not None and arch not in (None, "dcgan"):
        raise UsageError(f"--loss is for --arch dcgan; {arch} trains with the non-saturating loss.")
    if args.ada and arch in (None, "dcgan"):
        raise UsageError("--ada is for --arch stylegan2 or progan (dcgan has --augment).")
    if args.w_dim < 1 or args.map_depth < 1:
        raise UsageError(f"--w-dim and --map-depth must be at least 1, got {args.w_dim} and {args.map_depth}.")
    if args.phase_steps < 1:
        raise UsageError(f"--phase-steps must be at least 1, got {args.phase_steps}.")
    opts = {"arch": arch}
    if arch in ("stylegan2", "progan"):
        opts.update(w_dim=args.w_dim, map_depth=args.map_depth, r1_gamma=args.r1_gamma, ada=args.ada,
                    ada_target=args.ada_target, ada_kimg=args.ada_kimg, ada_pipeline=args.ada_pipeline,
                    phase_steps=args.phase_steps)
    return opts


def _run_task(run: str) -> str:
    """The task class a run folder's config.json names ('' when it names none or cannot be read)."""
    import json

    try:
        return str(json.loads((Path(run) / "config.json").read_text()).get("task_class") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _check_psi(psi: float) -> None:
    if not 0.0 <= psi <= 1.0:
        raise UsageError(f"--psi must be a number in [0, 1] (1: no truncation), got {psi}.")


def _sample(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}.")
    _check_psi(args.psi)
    text_run = _run_task(args.run).endswith(".StackGANTask")
    if args.prompt is not None and (args.class_id is not None or args.target is not None or args.cond is not None):
        raise UsageError("--prompt says the class and the place in words: give it without --class, --target and "
                         "--cond.")
    if text_run:  # a text-conditioned run samples from captions: `armlab stackgan sample`
        if args.class_id is not None or args.target is not None or args.cond is not None:
            raise UsageError(f"{args.run} is a text-conditioned (StackGAN) run: say the class and the place with "
                             f"--prompt, not --class, --target or --cond.")
        if args.psi != 1.0:
            raise UsageError(f"--psi (the truncation trick) is for conditional GAN runs; {args.run} is a "
                             f"text-conditioned (StackGAN) run.")
        from armlab_scripts.stackgan import _sample as sample_from_text

        return sample_from_text(args)
    if args.prompt is not None:
        raise UsageError(f"--prompt needs a text-conditioned run (`armlab stackgan train`); {args.run} is not one: "
                         f"give its conditions with --class and --target.")
    if args.side_margin is not None:
        raise UsageError(f"--side-margin places a caption's layout: it needs a text-conditioned run (`armlab stackgan "
                         f"train`); {args.run} is not one.")
    return _sample_conditions(args)


def _sample_conditions(args: argparse.Namespace) -> int:
    from generative.conditions import requested_conditions
    from generative.data import write_generated, write_grid
    from generative.gan import run_config, sample
    from generative.training import CHECKPOINT, load_checkpoint

    cfg = run_config(args.run)
    cond = requested_conditions(args.run, cfg.cond, None if args.cond is None else _parse_cond(args.cond),
                                class_id=args.class_id, target=args.target)
    images, class_ids, targets = sample(args.run, args.n, cond or None, seed=args.seed, device=args.device,
                                        ema=not args.no_ema, psi=args.psi)
    step = int(load_checkpoint(Path(args.run) / CHECKPOINT).get("step", 0))
    out = Path(args.out)
    write_generated(out, images, class_ids, targets, classes=cfg.classes,
                    extra_settings={"seed": args.seed, "run": str(args.run), "step": step, "ema": not args.no_ema,
                                    "psi": args.psi,
                                    "cond": list(cfg.cond), "model": "gan"})
    write_grid(out, images)
    print(f"{args.n} images from {args.run} (step {step}) -> {out} (armlab dataset, style 'generated') and "
          f"{out / 'grid.png'}")
    if args.json:
        emit_json({"out": str(out), "n": args.n, "run": str(args.run), "step": step, "cond": list(cfg.cond),
                   "grid": str(out / "grid.png")})
    return 0


def _eval(args: argparse.Namespace) -> int:
    from generative.gan import evaluate_gan

    if args.n < 2:
        raise UsageError(f"--n must be at least 2, got {args.n}.")
    _check_psi(args.psi)
    if args.probe_steps is not None and args.probe_steps < 1:
        raise UsageError(f"--probe-steps must be at least 1, got {args.probe_steps}.")
    kw = {"quick": args.quick, "n": args.n, "seed": args.seed, "device": args.device,
          "probe_steps": args.probe_steps, "ema": not args.no_ema, "psi": args.psi, "frames": args.frames}
    if args.snapshots:
        from generative.gan.evaluate import SNAPSHOT_KEYS, evaluate_snapshots

        r = evaluate_snapshots(args.run, args.data, **kw)
        which = "" if args.frames == "all" else f" ({args.frames} frames)"
        print(f"{args.run}: {len(r['rows'])} steps against {args.data}{which}\n"
              "  step  fid_custom  class  position  diversity")
        for row in r["rows"]:
            print(f"{row['step']:6d}  " + "  ".join(fmt(row[k], ".3f") for k in SNAPSHOT_KEYS))
        from armlab_scripts._gan_plots import plot_snapshots

        name = "snapshots.png" if args.frames == "all" else f"snapshots-{args.frames}.png"
        r["plot"] = plot_snapshots(r, Path(args.run) / name)
        print(f"lowest fid_custom {r['best']['fid_custom']:.3f} at step {r['best']['step']} ({r['best']['source']}); "
              f"plot {r['plot']}")
        if args.json:
            emit_json(r)
        return 0
    r = evaluate_gan(args.run, args.data, **kw)
    which = ""
    if r["pool"] is not None:
        first, end = r["pool"]
        span = f"{first}-{end - 1}" if end is not None else f"{first} on"
        which = f" ({args.frames} frames {span})"
    print_report(r, title=f"{args.run} (step {r['steps']}, cond {','.join(r['cond']) or 'none'}) against "
                 f"{args.data}{which}")
    if args.json:
        emit_json(r)
    return 0


def _latent(args: argparse.Namespace) -> int:
    from generative.gan.latent import explore, parse_psi

    if args.n_frames < 2:
        raise UsageError(f"--n-frames must be at least 2, got {args.n_frames}.")
    if args.project_steps < 1:
        raise UsageError(f"--project-steps must be at least 1, got {args.project_steps}.")
    psi = parse_psi(args.psi)
    if not Path(args.run).exists():
        raise UsageError(f"run folder {args.run!r} does not exist.")
    if args.project is not None and not Path(args.project).is_file():
        raise UsageError(f"image {args.project!r} (--project) does not exist.")
    r = explore(args.run, args.out, seed=args.seed, n_frames=args.n_frames, psi=psi, project_image=args.project,
                project_steps=args.project_steps, device=args.device)
    print(f"latent space of {args.run} ({r['arch']}) -> {args.out}: " + ", ".join(Path(p).name
                                                                            for p in r["files"].values()))
    if "projection" in r:
        p = r["projection"]
        print(f"projection of {args.project}: MSE {p['mse']:.4g} ({p['psnr_db']:.1f} dB PSNR) after {p['steps']} "
              "steps")
    if args.json:
        emit_json(r)
    return 0


def _ada(args: argparse.Namespace) -> int:
    import math

    from generative.gan.ada import SETTLED_RANGE, p_report, read_p_log

    if not (math.isfinite(args.window) and 0.0 < args.window <= 1.0):
        raise UsageError(f"--window must be a share of the steps in (0, 1], got {args.window}.")
    ps = _parse_p(args.p)
    run = Path(args.run)
    if not run.is_dir():
        raise UsageError(f"run folder {args.run!r} does not exist.")
    if not (run / "log.csv").is_file():
        raise UsageError(f"{args.run!r} has no log.csv: it is not a GAN run folder, or it has logged no step yet.")
    try:
        rows = read_p_log(run)
        r = p_report(rows, window=args.window)
    except ValueError as exc:
        raise UsageError(f"{exc}.") from None
    strength = _strength(args, ps) if args.strength else None  # before anything is written
    plot = Path(args.plot) if args.plot else run / "ada.png"
    from armlab_scripts._gan_plots import plot_p

    plot_p(rows, r, plot)
    r["plot"] = str(plot)
    print(f"ADA in {args.run}, {r['steps']} steps: p peaked at {r['p_peak']:.2f} (step {r['p_peak_step']}), "
          f"last {r['p_last']:.2f}")
    print(f"from step {r['from_step']}: p {r['p_min']:.2f}-{r['p_max']:.2f} (mean {r['p_mean']:.2f}, sd "
          f"{r['p_sd']:.3f}, trend {r['p_trend']:+.3f}), r_t {r['rt_min']:.2f}-{r['rt_max']:.2f} (mean "
          f"{r['rt_mean']:.2f}): " + ("settled" if r["settled"] else "not settled") + f"; plot {plot}")
    print(f"p has stayed within {SETTLED_RANGE:g} since step {r['band_from']} "
          f"(the last {r['steps'] - r['band_from']} steps)")
    if strength is not None:
        _print_strength(strength)
        r["strength"] = strength
    if args.json:
        emit_json(r)
    return 0


def _parse_p(text: str) -> list[float]:
    try:
        ps = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        ps = []
    if not ps or any(not 0.0 <= v <= 1.0 for v in ps):
        raise UsageError(f"--p must be comma-separated numbers in [0, 1], got {text!r}.")
    return ps


def _strength(args: argparse.Namespace, ps: list[float]) -> dict:
    from generative.gan.ada_probe import ada_strength

    try:
        return ada_strength(args.run, args.strength, ps)
    except ValueError as exc:
        raise UsageError(f"{exc}.") from None


def _print_strength(s: dict) -> None:
    print(f"D at step {s['steps']} (p {s['p_run']:.2f}, pipeline {s['pipeline_run']}): r = E[sign D(aug(x))], "
          f"target {s['target']:g}")
    for name, n in (("train", s["n_train"]), ("unseen", s["n_unseen"])):
        for pipe, rs in s["r"].get(name, {}).items():
            lg = s["logit"][name][pipe]
            print(f"  {name:6s} ({n} frames) {pipe:5s} " + "  ".join(f"p {k}: r {v:+.3f} (logit {lg[k]:+.2f})"
                                                                     for k, v in rs.items()))
    print("(at equal p, a lower r on the training frames is a stronger pipeline; r of one checkpoint is not the "
          "logged r_t, which D's drift between steps moves)")


def _export(args: argparse.Namespace) -> int:
    from armlab_scripts._export import export_run  # noqa: I001
    from generative.gan import run_config

    cfg = run_config(args.run)  # a GAN run, or one sentence why not
    return export_run(args, ("G",), {"model": "conditional GAN" if cfg.cond else "DCGAN", "cond": list(cfg.cond)})


TARGETS = {"class_acc_ratio": (">=", 0.9), "pos_err_ratio": ("<=", 2.0), "diversity_ratio": (">=", 0.8)}


def print_report(r: dict, title: str = "") -> None:
    """The metrics of `evaluate_gan` as a readable table."""
    footer = (f"  {r.get('n_fake')} fakes against {r.get('n_real')} real frames; training "
              f"{fmt(r.get('train_images_per_s'), '.0f')} images/s")
    print_generation_report(r, TARGETS, title, footer)
