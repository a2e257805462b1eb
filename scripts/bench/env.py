"""Env speed against the physics it runs, against panda-gym, and across SubprocVecEnv workers.

Every figure is measured in this run. Each ratio is the median over ``--repeats`` pairs
of back-to-back measurements (reference, then subject), which keeps the drifts of a shared
machine out of it; rates are the best seen.

* raw: bare ``stepSimulation`` calls on the same scene replaying the same motion (the
  torques set before the timer starts), the physical limit of the env;
* closed-loop and open-loop env: physics steps per second through ``gym.make``
  (resets, action checks, observations included), and their ratio to raw;
* Panda at panda-gym's rate (500 Hz physics, 20 substeps, joint position deltas, 50-step
  episodes, PyBullet's default solver in both) against ``PandaReachJoints-v3`` when
  panda-gym is installed (``pip install -e .[bench]``);
* ``SubprocVecEnv`` throughput with 2 workers against 1 worker (Panda open loop, and the
  small arm's open- and closed-loop envs).

``closed_loop_vs_raw`` and ``subproc2_vs_1`` are the Panda figures; the small arm's
appear with its name as a suffix.

    armlab bench env --json
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import gymnasium as gym
import numpy as np

import robot_env
from robot_env._quiet import quiet_c_output
from robot_env.sim import pb  # pybullet, imported without its banner by robot_env


def _paired(ref, fn, repeats: int, log: list | None = None) -> tuple[float, float, float]:
    """Run ``ref`` and ``fn`` alternately; return their best rates and the median of the
    per-pair ratios fn/ref (robust to the drifts of a shared machine). ``log``, when given,
    receives each pair of rates as ``[ref, fn]`` (the ratio's inputs, reported as ``per_pair``)."""
    pairs = []
    for _ in range(repeats):
        a = ref()
        pairs.append((a, fn()))
    if log is not None:
        log.extend([a, b] for a, b in pairs)
    ratios = sorted(b / a for a, b in pairs)
    return max(a for a, _ in pairs), max(b for _, b in pairs), float(np.median(ratios))


def _hold(arm, u) -> None:
    """Set a command that persists over the following steps, outside the timer."""
    if arm.control == "torque":
        pb.setJointMotorControlArray(
            arm.body, arm.joints, pb.VELOCITY_CONTROL, targetVelocities=[1e4 if t >= 0 else -1e4 for t in u],
            forces=[abs(t) for t in u], physicsClientId=arm.cid,
        )
    else:
        arm.command(u)


def _timed_steps(cid: int, n: int) -> float:
    """Seconds taken by ``n`` bare stepSimulation calls."""
    step = pb.stepSimulation
    t = time.perf_counter()
    for _ in range(n):
        step(physicsClientId=cid)
    return time.perf_counter() - t


def raw_open_loop(env, signals) -> float:
    """Physics steps/s of bare stepSimulation replaying the open-loop episodes."""
    u = env.unwrapped
    cid, steps, elapsed = u.world.id, 0, 0.0
    for x in signals:
        u.reset()
        rows, per = u.task.commands(x)
        for row in rows:
            _hold(u.arm, row)
            elapsed += _timed_steps(cid, per)
            steps += per
    return steps / elapsed


def env_open_loop(env, signals) -> float:
    """Physics steps/s through the env, counting every step it simulates (the state
    stage also simulates a target-defining signal at each reset)."""
    task = env.unwrapped.task
    before = task.physics_steps
    t = time.perf_counter()
    for x in signals:
        env.reset()
        env.step(x)
    return (task.physics_steps - before) / (time.perf_counter() - t)


def raw_closed_loop(env, actions) -> float:
    u = env.unwrapped
    cid, per, steps, elapsed = u.world.id, u.substeps, 0, 0.0
    env.reset()
    for i, a in enumerate(actions):
        if i % u.max_steps == 0:
            env.reset()
        cmd = u.arm.scale(a) if u.arm.control != "position" else u.arm.joint_state()[0] + a * u.position_delta
        _hold(u.arm, cmd.tolist())
        elapsed += _timed_steps(cid, per)
        steps += per
    return steps / elapsed


def env_steps(env, actions) -> float:
    """Env steps/s over ``actions``, resetting whenever an episode ends."""
    env.reset(seed=0)
    t = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return len(actions) / (time.perf_counter() - t)


def subproc_rate(env_id: str, n_envs: int, steps: int, env_kwargs: dict) -> float:

    venv = robot_env.make_vec_env(env_id, n_envs=n_envs, seed=0, subproc=True, **env_kwargs)
    try:
        venv.reset()
        actions = np.zeros((n_envs,) + venv.action_space.shape)
        for _ in range(20):
            venv.step(actions)
        t = time.perf_counter()
        for _ in range(steps):
            venv.step(actions)
        return n_envs * steps / (time.perf_counter() - t)
    finally:
        venv.close()


def _solo_rate(args: tuple) -> float:
    """Open-loop episodes/s of one env in its own process, no vec env (a machine probe)."""
    env_id, robot, episodes = args
    env = gym.make(env_id, robot=robot)
    x = np.full(env.action_space.shape, 0.1)
    env.reset(seed=0)
    t = time.perf_counter()
    for _ in range(episodes):
        env.reset()
        env.step(x)
    env.close()
    return episodes / (time.perf_counter() - t)


def parallel_ceiling(env_id: str, robot: str, episodes: int) -> float:
    """How much faster 2 independent processes run than 1 on this machine (the most a
    2-worker vec env could gain): total rate of 2 concurrent processes / rate of 1."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_solo_rate, [(env_id, robot, 2)] * 2)  # warm up imports in both workers
        one = pool.map(_solo_rate, [(env_id, robot, episodes)])[0]
        two = sum(pool.map(_solo_rate, [(env_id, robot, episodes)] * 2))
    return two / one


def measure(robot: str = "arm2", episodes: int = 200, repeats: int = 5, panda_steps: int = 2000,
            subproc_steps: int = 400, quick: bool = False) -> dict:
    """Every figure of the benchmark, measured in this process (see the module docstring)."""
    if quick:
        episodes, repeats, panda_steps, subproc_steps = 40, 1, 300, 60
    rng = np.random.default_rng(0)
    out: dict = {"robot": robot, "repeats": repeats}
    per_pair: dict[str, list] = {}  # ratio key -> its [reference, subject] rates, pair by pair

    def log(key: str) -> list:
        return per_pair.setdefault(key, [])

    # 1. the lecture's open-loop env, fixed stage, torque control, against raw physics
    ol = gym.make("armlab/ReachSignalFixed-v0", robot=robot)
    signals = rng.uniform(-1, 1, (episodes,) + ol.action_space.shape)
    raw, envr, ratio = _paired(lambda: raw_open_loop(ol, signals), lambda: env_open_loop(ol, signals), repeats,
                              log("open_loop_vs_raw"))
    out.update(raw_physics_steps_per_s=raw, open_loop_physics_steps_per_s=envr, open_loop_vs_raw=ratio)
    ol.close()

    # 2. the state stage: Coulomb friction occupies the motors, torques are re-sent every step
    st = gym.make("armlab/ReachSignalState-v0", robot=robot)
    half = signals[: episodes // 2]
    _, _, ratio = _paired(lambda: raw_open_loop(st, half), lambda: env_open_loop(st, half), repeats,
                        log("state_open_loop_vs_raw"))
    out.update(state_open_loop_vs_raw=ratio)
    st.close()

    # 3. closed loop on the same small arm: 10 substeps of a ~5 us physics step leave little
    #    room for the 3 PyBullet calls (command, joint states, end effector) every step needs
    cl = gym.make("armlab/ReachFixed-v0", robot=robot)
    actions = rng.uniform(-1, 1, (episodes * 4,) + cl.action_space.shape)
    per = cl.unwrapped.substeps
    _, _, ratio = _paired(lambda: raw_closed_loop(cl, actions), lambda: env_steps(cl, actions) * per, repeats,
                        log(f"closed_loop_vs_raw_{robot}"))
    out[f"closed_loop_vs_raw_{robot}"] = ratio
    cl.close()

    # 4. closed loop on the Panda at panda-gym's rate, against raw physics and panda-gym itself
    panda_kw = dict(robot="panda", control="position", timestep=1 / 500, substeps=20, horizon=50 * 20 / 500)
    ours = gym.make("armlab/ReachFixed-v0", **panda_kw)
    pa = rng.uniform(-1, 1, (panda_steps,) + ours.action_space.shape)
    raw_p, ours_rate, ratio = _paired(lambda: raw_closed_loop(ours, pa) / 20, lambda: env_steps(ours, pa), repeats,
                                    log("closed_loop_vs_raw"))
    out.update(panda_env_steps_per_s=ours_rate, panda_raw_env_steps_per_s=raw_p, closed_loop_vs_raw=ratio)
    ours.close()
    try:
        with quiet_c_output():
            import panda_gym  # noqa: F401

            theirs = gym.make("PandaReachJoints-v3")
    except ImportError:
        out["panda_gym"] = "not installed"
    else:
        ours = gym.make("armlab/ReachFixed-v0", **panda_kw)
        pg_rate, ours_rate, ratio = _paired(lambda: env_steps(theirs, pa), lambda: env_steps(ours, pa), repeats,
                                        log("vs_panda_gym"))
        out.update(panda_gym_env_steps_per_s=pg_rate, vs_panda_gym=ratio)
        theirs.close()
        ours.close()

    # 5. SubprocVecEnv, 2 workers against 1 (interleaved, best-of: this machine's vCPUs are
    #    shared). Each env step is one pipe round trip (~0.2 ms here), so the scaling depends on
    #    how much physics a step carries: the headline is the Panda open-loop env (~8 ms/step);
    #    the small-arm envs are reported beside it.
    cases = (("", "armlab/ReachSignalVelocity-v0", "panda", subproc_steps // 4),
             (f"_{robot}", "armlab/ReachSignalVelocity-v0", robot, subproc_steps),
             (f"_{robot}_closed_loop", "armlab/ReachVelocity-v0", robot, subproc_steps * 4))
    for key, env_id, r, n_steps in cases:
        one, two, ratio = _paired(partial(subproc_rate, env_id, 1, max(n_steps, 10), {"robot": r}),
                                  partial(subproc_rate, env_id, 2, max(n_steps, 10), {"robot": r}), max(repeats, 2),
                                  log(f"subproc2_vs_1{key}"))
        out[f"subproc2_vs_1{key}"] = ratio
        if not key:
            out.update(subproc1_env_steps_per_s=one, subproc2_env_steps_per_s=two)
    ceilings = [parallel_ceiling("armlab/ReachSignalVelocity-v0", "panda", max(subproc_steps // 4, 10))
                for _ in range(max(repeats, 2))]
    out["parallel_ceiling_2_processes"] = float(np.median(ceilings))
    out["per_pair"] = per_pair  # each *_vs_* ratio is the median of b / a over its [a, b] pairs
    out["per_repeat"] = {"parallel_ceiling_2_processes": ceilings}
    return out


TARGETS = {"closed_loop_vs_raw": 0.9, "open_loop_vs_raw": 0.75, "vs_panda_gym": 1.0, "subproc2_vs_1": 1.7}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="arm2", help="small arm of the open-loop and small-arm figures (default arm2)")
    p.add_argument("--episodes", type=int, default=200, help="open-loop episodes per measurement")
    p.add_argument("--repeats", type=int, default=5, help="paired measurements per ratio; the median is kept")
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test, not a measurement)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, emit_json
    from robot_env import ROBOTS

    if args.robot not in ROBOTS:
        raise UsageError(f"unknown robot {args.robot!r}; available robots: {', '.join(ROBOTS)}.")
    if args.episodes < 2 or args.repeats < 1:
        raise UsageError("--episodes must be >= 2 and --repeats >= 1.")
    r = measure(args.robot, args.episodes, args.repeats, quick=args.quick)
    a = args.robot
    print(f"\nenv speed, physics steps/s unless noted (ratios: median of {r['repeats']} paired runs)")
    print(f"  {a} open loop, fixed stage:  raw {r['raw_physics_steps_per_s']:,.0f}  env "
          f"{r['open_loop_physics_steps_per_s']:,.0f}  ratio {r['open_loop_vs_raw']:.2f}")
    print(f"  {a} open loop, state stage:  ratio {r['state_open_loop_vs_raw']:.2f}  (friction: torques re-sent)")
    print(f"  {a} closed loop, 24 Hz:      ratio {r[f'closed_loop_vs_raw_{a}']:.2f}  (3 PyBullet calls per step)")
    print(f"  panda closed loop, 500 Hz x 20 substeps: {r['panda_env_steps_per_s']:,.0f} env steps/s, raw "
          f"{r['panda_raw_env_steps_per_s']:,.0f}, ratio {r['closed_loop_vs_raw']:.2f}")
    if "vs_panda_gym" in r:
        print(f"  panda-gym PandaReachJoints-v3:           {r['panda_gym_env_steps_per_s']:,.0f} env steps/s, "
              f"armlab / panda-gym {r['vs_panda_gym']:.2f}")
    else:
        print("  panda-gym not installed: pip install -e '.[bench]' to compare")
    print(f"  SubprocVecEnv 2 vs 1 worker: panda open loop {r['subproc2_vs_1']:.2f}, {a} open loop "
          f"{r[f'subproc2_vs_1_{a}']:.2f}, {a} closed loop {r[f'subproc2_vs_1_{a}_closed_loop']:.2f}")
    print(f"  machine ceiling: 2 independent processes (no vec env, no pipe) run "
          f"{r['parallel_ceiling_2_processes']:.2f}x one")
    for key, target in TARGETS.items():
        if key in r:
            print(f"  target {key} >= {target}: {'met' if r[key] >= target else 'NOT met'} ({r[key]:.2f})")
    if args.json:
        emit_json(r)
    return 0
