"""Synthetic camera datasets: the arm on a table, a target object and distractors, seen by a camera.

    armlab dataset generate --out data/sim --n 10000 --size 128 --seed 0 --workers 2
    armlab dataset generate --out data/real --n 10000 --size 128 --seed 0 --style real   # same scenes, real look
    armlab dataset generate --out data/part0 --n 10000 --shard 0/4                        # one of 4 cluster jobs
    armlab dataset merge data/part0 data/part1 data/part2 data/part3 --out data/sim
    armlab dataset verify data/sim
    armlab dataset generate --out data/policy --n 10000 --poses-from runs/sac/ReachState-v0_1   # policy's poses

Per frame: RGB PNG, depth (uint16 mm PNG), instance segmentation (uint16 PNG) and a JSON label
(joints, end-effector pose, every object's 6-D pose and box, the target's pixel, K and the
OpenCV extrinsics); per dataset: COCO ``instances.json`` and ``manifest.json`` with the SHA-256
of every file. The format is described in docs/dataset-format.md.

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
                   help="local processes (default) or Ray tasks (pip install 'armlab[distributed]')")
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    g.set_defaults(dataset_func=_generate)

    m = sub.add_parser("merge", help="join shard folders into one dataset")
    m.add_argument("shards", nargs="+", help="shard folders written with --shard i/N")
    m.add_argument("--out", required=True, help="merged dataset folder")
    m.set_defaults(dataset_func=_merge)

    v = sub.add_parser("verify", help="check checksums, counts and label consistency")
    v.add_argument("root", help="dataset folder")
    v.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    v.set_defaults(dataset_func=_verify)


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
    shard = parse_shard(args.shard)
    if cfg.poses_from is not None:  # the policy's pose bank, stored in --out before any frame
        from controllers.poses import prepare_pose_bank

        cfg = prepare_pose_bank(args.out, cfg, workers=args.workers, shard=shard)
    if args.backend == "ray":
        from robot_env.dataset import generate_ray

        manifest = generate_ray(args.out, cfg, workers=args.workers, shard=shard)
    else:
        manifest = generate(args.out, cfg, workers=args.workers, shard=shard, progress=sys.stderr.isatty())
    timing = manifest.pop("_timing", {})
    summary = {"out": args.out, "frames": manifest["counts"]["frames"],
               "annotations": manifest["counts"]["annotations"], "files": manifest["counts"]["files"],
               "frames_rendered": timing.get("frames_rendered", 0),
               "render_seconds": round(timing.get("render_seconds", 0.0), 3)}
    poses = manifest.get("poses")
    if poses:
        summary["poses"] = poses["count"]
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


def _verify(args: argparse.Namespace) -> int:
    from robot_env.dataset import load_manifest, verify

    problems = verify(args.root)
    manifest = load_manifest(args.root)
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
