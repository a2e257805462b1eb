"""Synthetic camera datasets: the arm on a table, a target object and distractors, seen by a camera.

    armlab dataset generate --out data/sim --n 10000 --size 128 --seed 0 --workers 2
    armlab dataset generate --out data/real --n 10000 --size 128 --seed 0 --style real   # same scenes, real look
    armlab dataset generate --out data/part0 --n 10000 --shard 0/4                        # one of 4 cluster jobs
    armlab dataset merge data/part0 data/part1 data/part2 data/part3 --out data/sim
    armlab dataset verify data/sim
    armlab dataset generate --out data/policy --n 10000 --poses-from runs/sac/ReachState-v0_1   # policy's poses
    armlab dataset generate --out data/wds --n 100000 --size 64 --format wds --shard-size 1000 --workers 2
    armlab dataset convert --src data/sim --out data/sim-wds --format wds     # and back with --format files

Per frame: RGB PNG, depth (uint16 mm PNG), instance segmentation (uint16 PNG) and a JSON label
(joints, end-effector pose, every object's 6-D pose and box, the target's pixel, K and the
OpenCV extrinsics); per dataset: COCO ``instances.json`` and ``manifest.json`` with the SHA-256
of every file. The format is described in docs/dataset-format.md.

``--format wds`` writes the same frames as WebDataset tar shards (``shards/shard-NNNNNN.tar`` of
``--shard-size`` frames; members ``KEY.rgb.png``, ``KEY.depth.png``, ``KEY.seg.png``, ``KEY.json``) and
the COCO file only with ``--coco``; ``--shard i/N`` then gives each job whole tar shards. `verify`,
`merge` and `convert` take both formats.

The same command after a kill resumes; the same seed gives byte-identical files whatever the
number of workers or shards. ``--style real`` renders the same scenes through a simulated
physical camera (textures, shadows, vignetting, colour cast, blur, noise, JPEG, lens distortion).

``--poses-from RUN_DIR`` (a run folder of `armlab train` on the dataset's robot, arm3) takes the
arm's poses from the trained policy instead of random feasible configurations: its deterministic
policy is rolled out first (``--pose-episodes`` episodes of its own env, seeded from --seed), and
the joint positions and velocities along the trajectories that keep the arm above the table form
a pose bank, stored as ``poses.npz`` in the dataset (its SHA-256 in the manifest) by
`controllers.poses`; the dataset writer only reads that file. Frame i shows
the bank pose that ``default_rng([seed, i, 3])`` picks; everything else in it is what the seed
gives without --poses-from. The run's path and model hash are settings: resuming with another
run is refused.
"""

from __future__ import annotations

import argparse
import json
import sys

from armlab_scripts._common import UsageError, emit_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True
    from robot_env.dataset import DEFAULT_RANDOMIZE, RANDOMIZE, STYLES

    g = sub.add_parser("generate", help="render a dataset (resumes when run again)",
                       description="Render a synthetic camera dataset into --out (see `armlab dataset --help`).")
    g.add_argument("--out", required=True, help="dataset folder (created; a rerun resumes)")
    g.add_argument("--n", type=int, default=1000, help="number of frames in the whole dataset (default 1000)")
    g.add_argument("--size", type=int, default=128, help="image width = height in pixels (default 128)")
    g.add_argument("--seed", type=int, default=0, help="dataset seed; frame i depends only on (seed, i)")
    g.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    g.add_argument("--shard", default=None, metavar="i/N",
                   help="write only shard i of N (contiguous frames), for cluster jobs; join with `merge`")
    g.add_argument("--style", default="sim", choices=STYLES,
                   help="sim: the renderer's flat look; real: the first physical-camera stand-in; photo: the "
                        "sim-to-real benchmark's camera (warm lamp, materials, lens, sensor colour and noise, tone "
                        "curve, JPEG; see robot_env/dataset/look.py). Same seed: same scenes and labels")
    g.add_argument("--randomize", default=",".join(DEFAULT_RANDOMIZE),
                   help=f"comma list from {','.join(RANDOMIZE)}, or all / none (default: %(default)s)")
    g.add_argument("--max-distractors", type=int, default=3, help="0..6 distractor objects per frame (default 3)")
    g.add_argument("--object-size", type=float, default=0.10, help="object edge/diameter in metres (default 0.10)")
    g.add_argument("--poses-from", default=None, metavar="RUN_DIR",
                   help="a run folder of `armlab train` (trained on arm3): the arm's poses come from rollouts of "
                        "its deterministic policy (a pose bank stored as poses.npz) instead of random feasible "
                        "configurations")
    g.add_argument("--pose-episodes", type=int, default=64, metavar="N",
                   help="policy rollouts that fill the pose bank (with --poses-from; default 64)")
    g.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local processes (default) or Ray actors (pip install 'armlab[distributed]'; the cluster at "
                        "RAY_ADDRESS when it is set)")
    _format_arguments(g)
    g.add_argument("--outputs", default="rgb,depth,seg,label", metavar="LIST",
                   help="what each frame stores, in either format: a comma list from rgb, depth, seg, label (rgb and "
                        "label always; default all four). Without seg the COCO file has boxes but no masks")
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    g.set_defaults(dataset_func=_generate)

    m = sub.add_parser("merge", help="join shard folders into one dataset")
    m.add_argument("shards", nargs="+", help="shard folders written with --shard i/N")
    m.add_argument("--out", required=True, help="merged dataset folder")
    m.set_defaults(dataset_func=_merge)

    c = sub.add_parser("convert", help="write a dataset in the other format (files <-> wds), byte for byte",
                       description="Convert a dataset between the folder format (files) and WebDataset tar shards "
                                   "(wds); every frame keeps its bytes, and a round trip gives back the original "
                                   "files.")
    c.add_argument("--src", required=True, help="the dataset folder to convert (left as it is)")
    c.add_argument("--out", required=True, help="the new dataset folder (a rerun resumes)")
    _format_arguments(c, required=True)
    c.set_defaults(dataset_func=_convert)

    v = sub.add_parser("verify", help="check checksums, counts and label consistency")
    v.add_argument("root", help="dataset folder")
    v.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    v.set_defaults(dataset_func=_verify)


def _format_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--format", required=required, default=None if required else "files", metavar="files|wds",
                   help="files: four files a frame (rgb/, depth/, seg/, labels/); wds: WebDataset tar shards "
                        "(shards/shard-NNNNNN.tar, members KEY.rgb.png, KEY.depth.png, KEY.seg.png, KEY.json)"
                        + ("" if required else " (default files)"))
    p.add_argument("--shard-size", type=int, default=None, metavar="N", help="frames a tar shard (wds; default 1000)")
    p.add_argument("--coco", action="store_true",
                   help="wds: also write the COCO file instances.json (the folder format always has it)")


def _check_format(args: argparse.Namespace) -> None:
    from robot_env.io.shards import FORMATS, WDS

    if args.format not in FORMATS:
        raise UsageError(f"--format must be files or wds, got {args.format!r}.")
    if args.shard_size is not None and args.format != WDS:
        raise UsageError("--shard-size applies to --format wds only.")


def run(args: argparse.Namespace) -> int:
    return args.dataset_func(args)


def _generate(args: argparse.Namespace) -> int:
    from robot_env.dataset import DatasetConfig, generate, parse_randomize, parse_shard

    cfg = DatasetConfig(n=args.n, size=args.size, seed=args.seed, style=args.style,
                        randomize=parse_randomize(args.randomize), max_distractors=args.max_distractors,
                        object_size=args.object_size, poses_from=args.poses_from,
                        pose_episodes=args.pose_episodes).validate()
    if not 0.02 <= cfg.object_size <= 0.2:
        raise UsageError(f"--object-size must be between 0.02 and 0.2 m, got {cfg.object_size}.")
    _check_format(args)
    shard = parse_shard(args.shard)
    fmt = {"format": args.format, "shard_size": args.shard_size, "coco": args.coco, "outputs": args.outputs}
    if cfg.poses_from is not None:  # the policy's pose bank, stored in --out before any frame
        from controllers.poses import prepare_pose_bank

        cfg = prepare_pose_bank(args.out, cfg, workers=args.workers, shard=shard)
    if args.backend == "ray":
        import os

        from robot_env.dataset import generate_ray

        manifest = generate_ray(args.out, cfg, workers=args.workers, shard=shard,
                                address=os.environ.get("RAY_ADDRESS"), **fmt)
    else:
        manifest = generate(args.out, cfg, workers=args.workers, shard=shard, progress=sys.stderr.isatty(), **fmt)
    timing = manifest.pop("_timing", {})
    summary = {"out": args.out, "frames": manifest["counts"]["frames"],
               "annotations": manifest["counts"]["annotations"], "files": manifest["counts"]["files"],
               "frames_rendered": timing.get("frames_rendered", 0),
               "render_seconds": round(timing.get("render_seconds", 0.0), 3)}
    poses = manifest.get("poses")
    if poses:
        summary["poses"] = poses["count"]
    if "shards" in manifest["counts"]:
        summary["shards"] = manifest["counts"]["shards"]
    print(f"dataset {args.out}: {summary['frames']} frames ({summary['frames_rendered']} rendered now, "
          f"{summary['render_seconds']:.1f} s), {summary['annotations']} COCO annotations, manifest written"
          + (f"; arm poses from {poses['count']} policy poses of {poses['env_id']}" if poses else ""))
    if args.json:
        emit_json(summary)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from robot_env.dataset import merge

    manifest = merge(args.shards, args.out, progress=sys.stderr.isatty())
    print(f"merged {len(args.shards)} shards into {args.out}: {manifest['counts']['frames']} frames")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from robot_env.dataset import convert

    _check_format(args)
    manifest = convert(args.src, args.out, args.format, shard_size=args.shard_size, coco=args.coco,
                       progress=sys.stderr.isatty())
    shards = manifest["counts"].get("shards")
    print(f"converted {args.src} to {args.out} ({args.format}): {manifest['counts']['frames']} frames"
          + (f" in {shards} shards" if shards else ""))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from robot_env.dataset import DatasetError, load_manifest, verify

    problems = verify(args.root)
    manifest = load_manifest(args.root)
    if problems and manifest.get("layout") == "wds":  # a damaged shard: one sentence, exit 2
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DatasetError(f"{args.root} fails verification: {problems[0]}{more}; regenerate the damaged shards "
                           f"(delete them and rerun generate) or copy them again.")
    for p in problems[:20]:
        print(f"  {p}")
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more")
    ok = not problems
    print(f"{args.root}: {'OK' if ok else 'FAILED'} — {manifest['counts']['frames']} frames, "
          f"{len(manifest['files'])} files checked, {len(problems)} problems")
    if args.json:
        print(json.dumps({"ok": ok, "problems": len(problems), "frames": manifest["counts"]["frames"]}))
    return 0 if ok else 1
