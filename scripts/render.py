"""Record rollouts of a controller as a video (WebM, MP4 or GIF, by the --out extension).

One frame per control step for the closed-loop envs; the open-loop envs' single step (the
whole signal) is replayed from the episode start at 24 frames per simulated second. Each
view shows the target's pixel, the distance y and the step; several --camera names are
tiled side by side.

    armlab render --random --env armlab/ReachVelocity-v0 --episodes 2 --out rollout.webm
    armlab render --controller cmaes --camera front,wrist --size 320x240 --out cmaes.mp4
    armlab render --run runs/ppo --out ppo.gif

--run RUN_DIR plays a trained agent through ``controllers.rl.policy_controller(run_dir)``,
which returns a controller (``act(env, obs) -> action``); the ``env_id`` and
``env_kwargs`` it was trained on (from its ``info``, or the ``config`` of ``info["run"]``)
are used unless --env/--robot are given.
"""

from __future__ import annotations

import argparse

DEFAULT_ENV = "armlab/ReachSignalFixed-v0"


def add_arguments(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group()
    who.add_argument("--random", action="store_true", help="uniformly random actions (the default)")
    who.add_argument("--controller", choices=["cmaes"], help="per-context CMA-ES (open-loop envs)")
    who.add_argument("--run", metavar="RUN_DIR", help="a trained agent's run folder (controllers.rl)")
    p.add_argument("--env", default=None, help=f"env id (default {DEFAULT_ENV}, or the run's env with --run)")
    p.add_argument("--robot", default=None, help="robot name (arm2, arm3, panda, kuka)")
    p.add_argument("--episodes", type=int, default=2, help="episodes to record")
    p.add_argument("--camera", default="front", help="camera name(s), comma-separated: front, side, top, wrist")
    p.add_argument("--size", default="320x240", help="size of each camera's view, WxH")
    p.add_argument("--out", default="rollout.webm", help="output video: .webm, .mp4 or .gif")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    p.add_argument("--budget", type=int, default=500, help="CMA-ES evaluations per episode (--controller cmaes)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def _size(text: str) -> tuple[int, int]:
    from armlab_scripts._common import UsageError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must look like 320x240, got {text!r}.") from None
    if not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise UsageError(f"--size must be between 8x8 and 4096x4096, got {text!r}.")
    return w, h


def _policy(args: argparse.Namespace):
    """The controller to record and the env settings it brings: (policy, env_id, env_kwargs)."""
    from armlab_scripts._common import UsageError

    if args.run:
        import importlib

        try:
            rl = importlib.import_module("controllers.rl")
        except ImportError as exc:
            raise UsageError(f"--run needs controllers.rl, which could not be imported ({exc}).") from None
        policy_controller = getattr(rl, "policy_controller", None)
        if policy_controller is None:
            raise UsageError("--run needs controllers.rl.policy_controller, which this installation does not "
                             "have yet; use --random or --controller cmaes.")
        controller = policy_controller(args.run)
        info = getattr(controller, "info", None) or {}
        config = getattr(info.get("run"), "config", None) or {}  # a controllers.rl.LoadedRun's settings
        env_id = info.get("env_id") or config.get("env_id")
        return controller, env_id, dict(info.get("env_kwargs") or config.get("env_kwargs") or {})
    if args.controller == "cmaes":
        from controllers.evaluation import cmaes_controller

        if args.budget < 1:
            raise UsageError(f"--budget must be >= 1, got {args.budget}.")
        return cmaes_controller(budget=args.budget, seed=args.seed), None, {}
    return (lambda env, obs: env.action_space.sample()), None, {}


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    import robot_env
    from armlab_scripts._common import UsageError, emit_json
    from controllers.envs import make as make_env
    from robot_env.camera import CAMERA_NAMES
    from robot_env.video import RolloutRecorder, VideoWriteError, VideoWriter, video_format

    # check everything that can be wrong before anything is simulated
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}.")
    cameras = [c.strip() for c in args.camera.split(",") if c.strip()]
    bad = [c for c in cameras if c not in CAMERA_NAMES]
    if not cameras or bad:
        raise UsageError(f"unknown camera {', '.join(bad) or '(none)'}; choose from {', '.join(CAMERA_NAMES)}.")
    size = _size(args.size)
    try:
        video_format(args.out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.robot is not None and args.robot not in robot_env.ROBOTS:
        raise UsageError(f"unknown robot {args.robot!r}; available robots: {', '.join(robot_env.ROBOTS)}.")
    policy, run_env, env_kwargs = _policy(args)
    env_id = args.env or run_env or DEFAULT_ENV
    if env_id not in robot_env.ENV_IDS:
        raise UsageError(f"unknown env id {env_id!r}; armlab ids: {', '.join(robot_env.ENV_IDS)}.")
    if args.controller == "cmaes" and env_id not in robot_env.OPEN_LOOP_IDS.values():
        raise UsageError(f"--controller cmaes decides a whole signal, so it needs an open-loop env "
                         f"(armlab/ReachSignal*-v0), not {env_id}.")
    if args.robot is not None:
        env_kwargs["robot"] = args.robot

    env = make_env(env_id, **env_kwargs)  # the run's env kwargs may ask for controllers' parts (residual)
    t0 = time.perf_counter()
    try:
        recorder = RolloutRecorder(env, cameras, size=size)
        try:
            writer = VideoWriter(args.out, fps=recorder.fps, size=recorder.frame_size)
        except VideoWriteError as exc:
            raise UsageError(str(exc)) from None
        with writer:
            rec = recorder.record(policy, episodes=args.episodes, seed=args.seed, writer=writer)
    finally:
        env.close()
    w, h = recorder.frame_size
    figures = {
        "out": str(writer.path), "env_id": env_id, "episodes": args.episodes, "frames": rec.n_frames,
        "fps": rec.fps, "width": w, "height": h, "median_y": float(np.median(rec.distances)),
        "success_rate": float(np.mean(rec.successes)), "wall_s": time.perf_counter() - t0,
    }
    print(f"wrote {writer.path}: {rec.n_frames} frames of {w}x{h} at {rec.fps:g} fps, {args.episodes} episode(s) "
          f"of {env_id}, median y {100 * figures['median_y']:.1f} cm")
    if args.json:
        emit_json(figures)
    return 0
