"""The ``armlab`` command line: a thin layer that parses arguments and calls the library.

    armlab demo [--out runs/demo] [--quick]      the main job (see README)
    armlab envs                                  list the registered envs and robots
    armlab bench env [--json]                    env speed against raw physics and panda-gym
    armlab bench feasibility [--robot R] [--json]
                                                 can CMA-ES solve every stage, does a zero signal fail?
    armlab train --algo A --env E [--n-timesteps N] [--env-kwargs k:v ...] [--hyperparams k:v ...]
                 [-f runs] [--resume [--exp-id N]] [--normalize] [--n-envs N] [--json]
                                                 train PPO / SAC / TD3 / TQC / CrossQ (HER on dict obs) into runs/A/E_N/
    armlab evaluate --algo A --env E [-f runs] [--exp-id N | 1,2,3 | '*'] [--load-best | --load-checkpoint STEPS]
                                                 trained runs on the shared held-out contexts (error bars over runs)
    armlab tune --algo A --env E --n-trials N [--n-jobs J] [--storage URL] [--study-name S] [--json]
                                                 Optuna sweeps (SQLite, journal file, PostgreSQL); best -> YAML
    armlab bench tune [--json]                   trials/hour of 2 workers vs 1 on one PostgreSQL study
    armlab bench rl [--stage S] [--json]         RL success after a training time budget, seeds, intervals
    armlab compare [--robot arm3] [--quick] [--out runs/compare]
                                                 CMA-ES vs regression vs RL per stage: table and plot
    armlab render --random | --controller cmaes | --run RUN [--camera front,wrist] --out x.webm
                                                 rollout videos (WebM, MP4, GIF) with an overlay
    armlab dataset generate --out DIR [--n N] [--size S] [--style sim|real] [--workers W] [--shard i/N]
    armlab dataset merge SHARD... --out DIR  |  armlab dataset verify DIR
                                                 synthetic camera datasets (RGB, depth, seg, labels, COCO)
    armlab bench dataset [--json]                dataset frames/s against bare rendering; 2 workers vs 1
    armlab gan train|sample|eval ...             DCGAN and conditional GAN (class, target position)
    armlab bench gan [--json]                    the conditional GAN's targets, measured
    armlab cyclegan train|translate|eval ...     CycleGAN sim-to-real (datasets, folders, videos)
    armlab sim2real eval --sim D --real D --run R    gap closure of a CycleGAN run on a downstream regressor
    armlab bench cyclegan [--json]               CycleGAN speed, gap closure, PSNR gain
    armlab diffusion train|sample|eval ...       pixel / latent diffusion (diffusers), classifier-free guidance;
                                                 --cond text and sample --prompt: text to scene
    armlab stackgan train|sample|eval ...        two-stage text-to-image GAN (32 px, then 64 px) from captions
    armlab bench sim2real [--json]               sim-to-real table: translations, baselines, few labels
    armlab bench diffusion [--json]              diffusion vs GAN: conditioning, FID, speed per sampler
    armlab bench gpu-generative|gpu-diffusion ...    the prepared checks for a lent GPU (--device cpu: smoke test)

Bad input gets one sentence on stderr and exit code 2; a bug in armlab, its traceback and exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from robot_env.io.errors import ArmlabError, ParamError


def _envs(args: argparse.Namespace) -> int:
    import robot_env

    print(f"{'id':<32}{'loop':<8}stage")
    for stage, env_id in robot_env.OPEN_LOOP_IDS.items():
        print(f"{env_id:<32}{'open':<8}{stage}")
    for stage, env_id in robot_env.CLOSED_LOOP_IDS.items():
        print(f"{env_id:<32}{'closed':<8}{stage}")
    print("\nrobots:")
    for name, spec in robot_env.ROBOTS.items():
        print(f"  {name:<7}{spec.description}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other bad input: ``armlab: error: ...``."""

    def error(self, message: str):
        print(f"armlab: error: {' '.join(message.split())} (see: {self.prog} --help).", file=sys.stderr)
        raise SystemExit(2)


def _add(sub, name: str, module, help_text: str) -> None:
    """One subcommand from a module with ``add_arguments(parser)`` and ``run(args)``."""
    p = sub.add_parser(name, help=help_text, description=module.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    p.set_defaults(func=module.run)


def _add_main(sub, name: str, module, help_text: str) -> None:
    """A subcommand that hands its arguments to a module's own ``main(argv)`` (the GPU checks)."""
    p = sub.add_parser(name, help=help_text, add_help=False, description=module.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=lambda args: module.main(args.argv))


def build_parser() -> argparse.ArgumentParser:
    from armlab_scripts import (
        compare,
        cyclegan,
        dataset,
        demo,
        diffusion,
        evaluate,
        gan,
        render,
        sim2real,
        stackgan,
        train,
    )
    from armlab_scripts import tune as tune_cmd
    from armlab_scripts.bench import cyclegan as bench_cyclegan
    from armlab_scripts.bench import dataset as bench_dataset
    from armlab_scripts.bench import diffusion as bench_diffusion
    from armlab_scripts.bench import env as bench_env
    from armlab_scripts.bench import feasibility, gpu_diffusion, gpu_generative
    from armlab_scripts.bench import gan as bench_gan
    from armlab_scripts.bench import rl as bench_rl
    from armlab_scripts.bench import sim2real as bench_sim2real
    from armlab_scripts.bench import tune as bench_tune

    parser = _Parser(
        prog="armlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add(sub, "demo", demo, "the main job: envs, controllers, video, dataset, CycleGAN, GAN, diffusion, report.html")
    sub.add_parser("envs", help="list the registered env ids and robots").set_defaults(func=_envs)
    bench = sub.add_parser("bench", help="benchmarks (each takes --json)")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    _add(bsub, "env", bench_env, "env steps/s against raw physics, panda-gym and SubprocVecEnv")
    _add(bsub, "feasibility", feasibility, "CMA-ES solve rate per stage and the zero-signal check")
    _add(bsub, "dataset", bench_dataset, "dataset frames/s against bare rendering, and 2 workers against 1")
    _add(bsub, "gan", bench_gan, "conditional GAN: training images/s, conditioning error, FID, diversity")
    _add(bsub, "cyclegan", bench_cyclegan, "CycleGAN training speed, gap closure and PSNR gain, task term on/off")
    _add(bsub, "sim2real", bench_sim2real, "sim-to-real: camera model on held-out real frames per training set")
    _add(bsub, "rl", bench_rl, "RL success@2cm after a training wall-time budget over seeds, against CMA-ES")
    _add(bsub, "tune", bench_tune, "armlab tune: trials/hour of 2 workers vs 1 on one PostgreSQL study")
    _add(bsub, "diffusion", bench_diffusion, "pixel vs latent diffusion: quality, training and sampling speed")
    _add_main(bsub, "gpu-generative", gpu_generative, "the prepared GPU run: generative speed and time-boxed quality")
    _add_main(bsub, "gpu-diffusion", gpu_diffusion, "self-contained GPU check of diffusion training (no data)")
    _add(sub, "train", train, "train an SB3 agent (PPO, SAC, TD3, TQC, CrossQ; HER) on an armlab env")
    _add(sub, "evaluate", evaluate, "evaluate a trained run (or several: error bars) on the held-out contexts")
    _add(sub, "tune", tune_cmd, "Optuna hyperparameter sweeps: pruning, several workers, SQLite / journal / PostgreSQL")
    _add(sub, "compare", compare, "the lecture's comparison: CMA-ES vs regression vs RL per stage")
    _add(sub, "render", render, "record rollouts of a controller as WebM / MP4 / GIF")
    _add(sub, "dataset", dataset, "synthetic camera datasets: generate, merge shards, verify")
    _add(sub, "gan", gan, "GAN and conditional GAN on a dataset: train, sample, eval")
    _add(sub, "cyclegan", cyclegan, "CycleGAN sim<->real: train, translate datasets/folders/videos, eval")
    _add(sub, "sim2real", sim2real, "the sim-to-real gap closed by a CycleGAN run (regressor, PSNR/SSIM)")
    _add(sub, "diffusion", diffusion, "pixel and latent diffusion with guidance: train, sample, eval")
    _add(sub, "stackgan", stackgan, "two-stage text-to-image GAN from the labels' captions: train, sample, eval")
    return parser


def _command_parsers(parser: argparse.ArgumentParser, argv: list[str]) -> list[argparse.ArgumentParser]:
    """The parser of each (sub)command named in ``argv``, outermost first (``armlab gan train``: three)."""
    chain, words = [parser], [a for a in argv if not a.startswith("-")]
    while True:
        subs = [a for a in chain[-1]._actions if isinstance(a, argparse._SubParsersAction)]
        nxt = next((subs[0].choices[w] for w in words if subs and w in subs[0].choices), None)
        if nxt is None:
            return chain
        chain.append(nxt)


def flag_for(parser: argparse.ArgumentParser, argv: list[str], param: str) -> str:
    """The command-line flag of library parameter ``param`` in the command ``argv`` runs (``n`` -> ``--n``);
    the parameter's own name when no option of that command sets it."""
    for p in reversed(_command_parsers(parser, argv)):
        for action in p._actions:
            if action.dest == param and action.option_strings:
                return max(action.option_strings, key=len)
    return param


#: ``armlab bench NAME ...`` commands whose arguments go, untouched, to the module's own ``main(argv)``
_PASSTHROUGH = {"gpu-generative": "armlab_scripts.bench.gpu_generative",
                "gpu-diffusion": "armlab_scripts.bench.gpu_diffusion"}


#: the line under the traceback of an exception that is not the user's mistake
BUG_NOTE = ("armlab: this is a bug in armlab, not a mistake in your input: please report it, with the "
            "command and the traceback above, at the project's issue tracker.")


def _sentence(exc: BaseException) -> str:
    """``exc``'s message as one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run ``armlab argv``. The one place that maps errors to exit codes: an `ArmlabError` (the user's mistake:
    bad setting, bad data, missing or unwritable path, missing device) is one sentence on stderr and exit code 2;
    Ctrl-C is 130; anything else is a bug in armlab: its traceback, a line asking to report it, exit code 1."""
    import traceback

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = None
    try:
        if len(argv) >= 2 and argv[0] == "bench" and argv[1] in _PASSTHROUGH:
            import importlib

            return int(importlib.import_module(_PASSTHROUGH[argv[1]]).main(argv[2:]) or 0)
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or an argparse error, already printed as one line (2)
            return exc.code if isinstance(exc.code, int) else 2
        return int(args.func(args) or 0)
    except ParamError as exc:  # the library names its parameter; the user passed a flag
        flag = exc.param if parser is None else flag_for(parser, argv, exc.param)
        print(f"armlab: error: {_sentence(exc.render(flag))}", file=sys.stderr)
        return 2
    except ArmlabError as exc:
        print(f"armlab: error: {_sentence(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("armlab: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(BUG_NOTE, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
