"""How much of the sim-to-real gap a CycleGAN run closes, for a target-position regressor.

    armlab sim2real eval --sim data/sim --real data/real --run runs/cyclegan
    armlab sim2real eval --sim data/sim --real data/real --run runs/cyclegan --quick --json

The same small regressor (where is the target in the image?) is trained three ways, with the same seeds and budget,
and tested on the last 20% of the real frames: on sim images (error e_sim), on the sim images translated by the run
(e_trans) and on the first 80% of the real images (e_real, the oracle). gap_closure = (e_sim - e_trans) /
(e_sim - e_real): 0 means the translation does not help, 1 that it is as good as labelled real data. Errors are in
pixels. When --real was generated with --style real and the same seed as --sim (paired frames), PSNR and SSIM of
G(sim) and of sim itself against the real frames are reported too (psnr_gain = psnr_trans - psnr_sim).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from armlab_scripts._common import UsageError, emit_json
from armlab_scripts._trainer import use_threads


def add_eval_arguments(e: argparse.ArgumentParser) -> None:
    """The options of `armlab cyclegan eval` and `armlab sim2real eval`."""
    e.add_argument("--run", required=True, help="CycleGAN run folder")
    e.add_argument("--sim", required=True, help="labelled sim armlab dataset")
    e.add_argument("--real", required=True, help="labelled real armlab dataset (e.g. --style real, same seed)")
    e.add_argument("--quick", action="store_true", help="tiny regressor budget (a smoke test, not a measurement)")
    e.add_argument("--seed", type=int, default=0, help="first regressor seed (default 0)")
    e.add_argument("--steps", type=int, default=None, help="regressor training steps (default 600; 40 with --quick)")
    e.add_argument("--n-seeds", type=int, default=None,
                   help="regressors averaged per error (default 2; 1 with --quick)")
    e.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of the real frames (the last ones) held out for testing (default 0.2)")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    e.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sim2real_command", metavar="ACTION")
    sub.required = True
    e = sub.add_parser("eval", help="gap closure and PSNR/SSIM of a CycleGAN run",
                       description="Measure the sim-to-real gap closed by a CycleGAN run (see `armlab sim2real "
                                   "--help`).")
    add_eval_arguments(e)
    e.set_defaults(sim2real_func=run_eval)


def run(args: argparse.Namespace) -> int:
    return args.sim2real_func(args)


def _fmt(v, unit: str = "", digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}{unit}"


def print_report(r: dict) -> None:
    """The figures of `generative.sim2real.sim2real_eval` as a small table."""
    term = f"on (weight {r['task_weight']:g})" if r["task_consistency"] else "off"
    print(f"sim2real eval of {r['run']} (step {r['run_step']}, task-consistency term {term}); "
          f"regressor: {r['regressor_steps']} steps x {r['n_seeds']} seed(s), trained on {r['n_train']} frames, "
          f"tested on {r['n_test']} held-out real frames at {r['size']} px")
    print(f"  {'trained on':<22}{'error on real (px)':>20}")
    print(f"  {'sim':<22}{_fmt(r['e_sim']):>20}")
    print(f"  {'sim -> real (G)':<22}{_fmt(r['e_trans']):>20}")
    print(f"  {'real (oracle)':<22}{_fmt(r['e_real']):>20}")
    print(f"  gap closure {_fmt(r['gap_closure'], digits=2)}  (e_sim - e_trans) / (e_sim - e_real), gap "
          f"{_fmt(r['gap'])} px")
    if r["gap"] <= 0:
        print("  (the sim-trained regressor is no worse than the oracle: there is no gap, so the closure means "
              "nothing; --quick budgets often end here)")
    if r["paired"] and r.get("psnr_sim") is not None:
        print(f"  paired frames ({r['n_pairs']}): PSNR sim {_fmt(r['psnr_sim'], ' dB', 2)} -> G(sim) "
              f"{_fmt(r['psnr_trans'], ' dB', 2)} (gain {_fmt(r['psnr_gain'], ' dB', 2)}); SSIM "
              f"{_fmt(r['ssim_sim'])} -> {_fmt(r['ssim_trans'])}")
    else:
        print("  (no PSNR/SSIM: the datasets are not paired sim/real renders of the same seed)")


def run_eval(args: argparse.Namespace) -> int:
    from generative.sim2real import sim2real_eval

    for name in ("sim", "real", "run"):
        if not Path(getattr(args, name)).is_dir():
            raise UsageError(f"--{name} {getattr(args, name)!r} is not a folder.")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}.")
    if args.n_seeds is not None and args.n_seeds < 1:
        raise UsageError(f"--n-seeds must be at least 1, got {args.n_seeds}.")
    if not 0 < args.holdout < 1:
        raise UsageError(f"--holdout must be between 0 and 1, got {args.holdout}.")
    use_threads(args.threads)
    r = sim2real_eval(args.sim, args.real, args.run, quick=args.quick, seed=args.seed, holdout=args.holdout,
                      steps=args.steps, n_seeds=args.n_seeds)
    print_report(r)
    if args.json:
        emit_json(r)
    return 0
