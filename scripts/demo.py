"""The main job: everything armlab is for, at a small scale, in one reported run.

Stages (each prints a one-line result; a finished stage is reused when the demo runs again
with the same settings — its outputs are recorded in ``OUT/stages/NAME.json``):

1. envs        build the six reach envs and check each with Gymnasium's env checker;
2. cmaes       CMA-ES ("try hundreds of x") on one context of each open-loop stage beside
               random search, and the arm2 landscape y(x) with the search path (landscape.png);
3. comparison  the lecture's comparison on the velocity stage: zero signal, CMA-ES per
               context, regression from optimized examples and a short SAC training on the
               same held-out contexts (table and comparison.png);
4. video       the trained SAC policy from two cameras (sac_rollout.webm);
5. dataset     a small synthetic camera dataset in sim and real styles (data/sim, data/real)
               and a sample sheet with the labels drawn (dataset_samples.png);
6. sim2real    the look translator (a camera model with a small residual net, trained with
               CycleGAN's losses) between plain sim frames and the photo camera, its
               translations (sim2real_samples.png), a side-by-side sim/translated rollout
               (sim2real_rollout.webm) and a small downstream table: the camera model trained
               on sim, histogram-matched sim, translated sim and real frames, tested on held-out
               real frames (one seed; the full table is `armlab bench sim2real`);
7. generate    samples per class of the conditional GAN and the latent diffusion model whose
               small weights ship in generative/pretrained (gan_samples.png,
               diffusion_samples.png; if those folders are gone, short runs are trained here),
               a walk through the GAN's latent space (latent/interp_z.webm, truncation.png),
               and samples from prompts (prompt_samples.png: the class and side a sentence names,
               each image's layout drawn from the dataset's frames of that class on that side);
8. report      report.html: one self-contained page with all of the above.

``--quick`` shrinks every budget (about two minutes); ``--fresh`` reruns every stage.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from armlab_scripts._demo_figures import class_sheet, comparison_plot, fmt_m, label_sheet, landscape_plot, write_png
from armlab_scripts._demo_sim2real import demo_dataset, stage_sim2real


def pretrained(name: str = "cgan64") -> Path:
    """The folder of weights shipped with armlab under ``generative/pretrained`` (made by the commands in their
    PROVENANCE.json), which the demo samples instead of training for a few CPU minutes: ``cgan64`` (the conditional
    GAN) and ``ldm64`` (latent diffusion)."""
    import generative

    return Path(generative.__file__).resolve().parent / "pretrained" / name


def _shipped(name: str) -> Path | None:
    root = pretrained(name)
    return root if (root / "checkpoint.pt").is_file() else None


def _shipped_figures(root: Path, what: str) -> tuple[dict, str]:
    """The report's figures and line of a model sampled from shipped weights."""
    note = json.loads((root / "PROVENANCE.json").read_text())
    m = note.get("metrics") or {}
    nan = float("nan")
    return ({what: f"sampled from the shipped weights ({note['step']:,} CPU steps; not trained here)",
             f"{what} class accuracy / position error vs real": f"{m.get('class_acc_ratio', nan):.2f}x / "
                                                               f"{m.get('pos_err_ratio', nan):.2f}x"},
            f"{what} sampled from the shipped weights ({note['step']:,} steps)")


def _check_envs(progress: bool) -> list[dict]:
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import robot_env

    rows = []
    for env_id in tqdm(robot_env.ENV_IDS, desc="build + check envs", disable=not progress):
        env = gym.make(env_id)
        check_env(env.unwrapped, skip_render_check=True)
        rows.append({"id": env_id, "obs": list(env.observation_space.shape), "action": list(env.action_space.shape)})
        env.close()
    return rows


def _search(stage: str, budget: int, seed: int) -> dict:
    import gymnasium as gym

    import robot_env
    from controllers.optimization import cmaes, random_search

    env = gym.make(robot_env.OPEN_LOOP_IDS[stage], robot="arm2").unwrapped
    try:
        env.reset(seed=seed)
        dim = env.action_space.shape[0]
        es = cmaes(env.evaluate, dim, budget=budget, seed=seed)
        rs = random_search(env.evaluate, dim, budget=budget, seed=seed)
        zero = env.evaluate(np.zeros(dim))
    finally:
        env.close()
    return {"stage": stage, "cmaes": es, "random": rs, "zero_y": zero}


def _landscape(grid: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    import gymnasium as gym

    import robot_env

    env = gym.make(robot_env.OPEN_LOOP_IDS["fixed"], robot="arm2").unwrapped
    try:
        env.reset(seed=0)
        xs = np.linspace(-1.0, 1.0, grid)
        y = np.empty((grid, grid))
        for i in tqdm(range(grid), desc=f"landscape {grid}x{grid}", disable=not progress):
            for j in range(grid):
                y[i, j] = env.evaluate(np.array([xs[j], xs[i]]))  # rows: x2, columns: x1
    finally:
        env.close()
    return xs, y


def _video(rl_dir: Path, path: Path, seed: int) -> None:
    import gymnasium as gym

    from controllers import rl
    from robot_env.video import RolloutRecorder, VideoWriter

    ctrl = rl.policy_controller(next(rl_dir.glob("sac/*")))
    env = gym.make("armlab/ReachSignalVelocity-v0", robot="arm2")
    try:
        recorder = RolloutRecorder(env, ("front", "top"), size=(320, 240))
        with VideoWriter(path, fps=recorder.fps, size=recorder.frame_size) as writer:
            recorder.record(ctrl, episodes=3, seed=seed, writer=writer)
    finally:
        env.close()


# -- stages ---------------------------------------------------------------------------------------
class Demo:
    """The run folder, the settings, and the bookkeeping that lets finished stages be reused."""

    def __init__(self, out: Path, settings: dict, progress: bool, fresh: bool) -> None:
        self.out, self.settings, self.progress = out, settings, progress
        self.reused: list[str] = []
        self.stage_dir = out / "stages"
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            for f in self.stage_dir.glob("*.json"):
                f.unlink()

    def record(self, name: str) -> dict | None:
        path = self.stage_dir / f"{name}.json"
        if not path.exists():
            return None
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if rec.get("settings") != self.settings.get(name):
            return None
        if not all((self.out / f).exists() for f in rec.get("files", [])):
            return None
        return rec

    def run(self, k: int, n: int, name: str, fn) -> dict:
        from armlab_scripts._common import atomic_write_text

        rec = self.record(name)
        if rec is not None:
            print(f"[{k}/{n}] {name}: reused ({rec['line']})")
            self.reused.append(name)
            return rec
        t0 = time.perf_counter()
        result = fn()
        rec = {"settings": self.settings.get(name), "wall_s": time.perf_counter() - t0, **result}
        atomic_write_text(self.stage_dir / f"{name}.json", json.dumps(rec, indent=1, default=float))
        print(f"[{k}/{n}] {name}: {rec['line']} ({rec['wall_s']:.0f} s)")
        return rec


def stage_envs(demo: Demo) -> dict:
    envs = _check_envs(demo.progress)
    return {"line": f"built and checked {len(envs)} envs", "envs": envs, "files": []}


def stage_cmaes(demo: Demo) -> dict:
    s = demo.settings["cmaes"]
    searches = [_search(stage, s["budget"], s["seed"]) for stage in tqdm(
        ("fixed", "velocity", "state"), desc="CMA-ES per stage", disable=not demo.progress)]
    table = ["| stage | CMA-ES best y | random best y | zero-signal y | evaluations | wall time |",
             "|---|---|---|---|---|---|"]
    for r in searches:
        es, rs = r["cmaes"], r["random"]
        table.append(f"| {r['stage']} | {fmt_m(es.y)} | {fmt_m(rs.y)} | {fmt_m(r['zero_y'])} "
                     f"| {es.evaluations} | {es.wall_time:.2f} s |")
    xs, y = _landscape(s["grid"], demo.progress)
    landscape_plot(demo.out / "landscape.png", xs, y, searches[0])
    rows = [{"stage": r["stage"], "cmaes_y": r["cmaes"].y, "cmaes_x": r["cmaes"].x.tolist(),
             "evaluations": r["cmaes"].evaluations, "wall_s": r["cmaes"].wall_time, "random_y": r["random"].y,
             "zero_y": r["zero_y"]} for r in searches]
    worst = max(r["cmaes_y"] for r in rows)
    return {"line": f"CMA-ES reaches every stage's target to within {fmt_m(worst)}; landscape.png",
            "table": "\n".join(table), "searches": rows,
            "landscape": {"grid": s["grid"], "min_y": float(y.min()), "share_below_1cm": float(np.mean(y < 0.01))},
            "files": ["landscape.png"]}


def stage_comparison(demo: Demo) -> dict:
    s = demo.settings["comparison"]
    from controllers.comparison import mapping_comparison
    from controllers.evaluation import to_markdown

    # velocity stage: zero signal, CMA-ES per context, regression from optimized examples and a short SAC
    # training, on the same held-out contexts
    results = mapping_comparison(demo.out / "rl", s["rl_steps"], s["contexts"], s["seed"], demo.progress)
    table, rows = to_markdown(results), [r.row() for r in results]
    comparison_plot(rows, demo.out / "comparison.png")
    sac = rows[-1]
    return {"line": f"SAC after {s['rl_steps']:,} steps: median y {fmt_m(sac['median_y'])}, "
                    f"{sac['success_2cm']:.0%} within 2 cm on {s['contexts']} held-out contexts",
            "table": table, "rows": rows, "files": ["comparison.png", "rl"]}


def stage_video(demo: Demo) -> dict:
    video = demo.out / "sac_rollout.webm"
    _video(demo.out / "rl", video, demo.settings["video"]["seed"])
    return {"line": f"{video.name}, 3 episodes from the front and top cameras", "files": [video.name]}


def stage_dataset(demo: Demo) -> dict:
    from robot_env.dataset import DatasetConfig

    s = demo.settings["dataset"]
    counts = {}
    for style in ("sim", "real"):
        cfg = DatasetConfig(n=s["n"], size=s["size"], seed=s["seed"], style=style)
        counts[style] = demo_dataset(demo.out / "data" / style, cfg, s["workers"], demo.progress)["counts"]
    write_png(demo.out / "dataset_samples.png",
               label_sheet(demo.out / "data" / "sim", demo.out / "data" / "real", list(range(6))))
    return {"line": f"{s['n']} frames each in sim and real styles at {s['size']} px, "
                    f"{counts['sim']['annotations']} COCO annotations per style; dataset_samples.png",
            "counts": counts, "files": ["data/sim/manifest.json", "data/real/manifest.json", "dataset_samples.png"]}


def _images_per_s(summary: dict) -> float:
    """Training images/s of a run, from its latest training session that ran steps."""
    if summary.get("images_per_s"):
        return float(summary["images_per_s"])
    for h in reversed(summary.get("history", [])):
        if h.get("images_per_s"):
            return float(h["images_per_s"])
    return float("nan")


#: the demo's prompts, one row of prompt_samples.png each
DEMO_PROMPTS = ("a red cube on the left of the table", "a red cylinder in the middle of the table",
                "a red sphere on the right of the table")


def stage_generate(demo: Demo) -> dict:
    from generative.diffusion import TRAIN_DEFAULTS as DIFFUSION_TRAINING
    from generative.diffusion import sample as diffusion_sample
    from generative.diffusion import train_diffusion
    from generative.gan import TRAIN_DEFAULTS as GAN_TRAINING
    from generative.gan import sample as gan_sample
    from generative.gan import train_gan
    from generative.gan.latent import explore
    from generative.training import TrainConfig

    s = demo.settings["generate"]
    data = demo.out / "data" / "sim"

    def short_run(name: str, steps: int, defaults: dict) -> TrainConfig:
        """The demo's short training run (when the shipped weights are gone)."""
        return TrainConfig(out=demo.out / name, steps=steps, **{**defaults, "batch_size": s["batch_size"]},
                           seed=s["seed"], device="cpu", progress=demo.progress, tensorboard=False,
                           sample_every=10**9, checkpoint_every=max(50, steps // 4))

    gan_run, diffusion_run = _shipped("cgan64"), _shipped("ldm64")
    files = ["gan_samples.png", "diffusion_samples.png"]
    if gan_run is None:
        summary = train_gan(data, short_run("gan", s["gan_steps"], GAN_TRAINING), cond="class,target", size=s["size"])
        gan_run = demo.out / "gan"
        g_ips = _images_per_s(summary)
        gan = {"GAN": f"trained here, {s['gan_steps']:,} steps", "GAN training images/s": f"{g_ips:.0f}"}
        gan_line = f"conditional GAN {s['gan_steps']:,} steps ({g_ips:.0f} images/s)"
        files.append("gan/checkpoint.pt")
    else:
        gan, gan_line = _shipped_figures(gan_run, "GAN")
    rows = [gan_sample(gan_run, s["per_class"], cond={"class_id": c}, seed=s["seed"])[0] for c in range(3)]
    write_png(demo.out / "gan_samples.png", class_sheet(rows))
    # the lecture's latent space: a walk through z (slerp between random points) of the GAN, one condition held
    latent = explore(gan_run, demo.out / "latent", seed=s["seed"], n_frames=s["latent_frames"])
    files += ["latent/interp_z.webm", "latent/truncation.png"]
    if diffusion_run is None:  # a short class-conditional run, sampled with ancestral DDPM (reads well early on)
        dsum = train_diffusion(data, short_run("diffusion", s["diffusion_steps"], DIFFUSION_TRAINING),
                               size=s["size"], cond="class", model="tiny")
        diffusion_run, sampler, guidance = demo.out / "diffusion", "ddpm", 2.0
        d_ips = _images_per_s(dsum)
        diffusion = {"diffusion": f"trained here, {s['diffusion_steps']:,} steps",
                     "diffusion training images/s": f"{d_ips:.0f}"}
        diffusion_line = f"class-conditional diffusion {s['diffusion_steps']:,} steps ({d_ips:.0f} images/s)"
        files.append("diffusion/checkpoint.pt")
    else:  # the shipped latent model, class and target conditioned, with DDIM and guidance 3
        sampler, guidance = "ddim", 3.0
        diffusion, diffusion_line = _shipped_figures(diffusion_run, "diffusion")
    rows = [diffusion_sample(diffusion_run, s["per_class"], cond={"class_id": c}, sampler=sampler,
                             steps=s["sample_steps"], guidance=guidance, seed=s["seed"])[0] for c in range(3)]
    write_png(demo.out / "diffusion_samples.png", class_sheet(rows))
    # samples from a prompt: the class and the side a sentence names (generative.text.caption_conditions), each
    # image's layout drawn from the dataset's frames of that class on that side, sampled by the diffusion model
    from generative.data import ArmlabDataset
    from generative.diffusion import load_pipeline
    from generative.text import prompt_layouts

    labels = ArmlabDataset(data).labels()
    ids = [lab["class_id"] for lab in labels]
    uv = [lab["target"]["pixel_norm"] for lab in labels]
    takes_target = "target" in load_pipeline(diffusion_run).cfg.cond
    rows = []
    for k, prompt in enumerate(DEMO_PROMPTS):
        layout = prompt_layouts(prompt, ids, uv, s["per_class"], seed=s["seed"] + k)
        cond = layout if takes_target else {"class_id": layout["class_id"]}
        rows.append(diffusion_sample(diffusion_run, s["per_class"], cond=cond, sampler=sampler,
                                     steps=s["sample_steps"], guidance=guidance, seed=s["seed"] + k)[0])
    write_png(demo.out / "prompt_samples.png", class_sheet(rows))
    files.append("prompt_samples.png")
    sampling = f"{sampler.upper()} {s['sample_steps']} steps, guidance {guidance:g}"
    return {"line": f"{gan_line}; {diffusion_line} ({sampling}); gan_samples.png, diffusion_samples.png",
            "prompts": list(DEMO_PROMPTS),
            "figures": {**gan, **diffusion, "diffusion sampling": sampling,
                        "prompts (rows of prompt_samples.png)": " | ".join(DEMO_PROMPTS),
                        "latent walk": f"{latent['n_frames']} frames, slerp in z, class {latent['class_id']}"},
            "gan_source": "trained" if "gan/checkpoint.pt" in files else "pretrained",
            "diffusion_source": "trained" if "diffusion/checkpoint.pt" in files else "pretrained",
            "files": files}


STAGES = [("envs", stage_envs), ("cmaes", stage_cmaes), ("comparison", stage_comparison), ("video", stage_video),
          ("dataset", stage_dataset), ("sim2real", stage_sim2real), ("generate", stage_generate)]


def settings_for(args: argparse.Namespace) -> dict:
    q = args.quick
    seed = args.seed
    return {
        "envs": {},
        "cmaes": {"budget": args.budget or (300 if q else 600), "grid": args.grid or (41 if q else 81), "seed": seed},
        "comparison": {"rl_steps": args.rl_steps or (600 if q else 3000), "contexts": 20 if q else 50, "seed": seed},
        "video": {"seed": seed, "rl_steps": args.rl_steps or (600 if q else 3000)},
        "dataset": {"n": 96 if q else 600, "size": 64, "seed": seed, "workers": 2},
        "sim2real": {"n": 96 if q else 600, "size": 64, "seed": seed, "steps": 20 if q else 600, "batch_size": 8,
                     "n_real": 40 if q else 300, "downstream_steps": 20 if q else 500,
                     "video_frames": 24 if q else 72},
        "generate": {"gan_steps": 30 if q else 300, "diffusion_steps": 20 if q else 1000,
                     "sample_steps": 10 if q else 25, "size": 64, "batch_size": 16 if q else 32, "per_class": 8,
                     "latent_frames": 24 if q else 72,
                     "seed": seed, "dataset_n": 96 if q else 600},
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (created if needed; finished stages are reused)")
    p.add_argument("--quick", action="store_true", help="small budgets everywhere (about two minutes)")
    p.add_argument("--fresh", action="store_true", help="rerun every stage instead of reusing finished ones")
    p.add_argument("--budget", type=int, default=None, help="evaluations per search (default 600, quick 300)")
    p.add_argument("--grid", type=int, default=None, help="landscape resolution per axis (default 81, quick 41)")
    p.add_argument("--rl-steps", type=int, default=None, help="SAC training steps (default 3000, quick 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage")
    p.add_argument("--threads", default="auto",
                   help="torch CPU threads for the training stages, or auto (default): the cores the load average "
                        "leaves free (two threads on two cores that other processes also use run several times "
                        "slower than one)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")


def run(args: argparse.Namespace) -> int:
    from armlab_scripts._common import UsageError, atomic_write_text, emit_json
    from armlab_scripts.report import write_report

    if (args.budget is not None and args.budget < 10) or (args.grid is not None and args.grid < 5) or (
            args.rl_steps is not None and args.rl_steps < 100):
        raise UsageError("--budget must be >= 10, --grid >= 5 and --rl-steps >= 100.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder.")
    import torch

    from robot_env.io.atomic import make_dirs
    from robot_env.io.threads import resolve_threads, set_threads

    threads = resolve_threads(args.threads, torch.get_num_threads())  # checked before anything is written
    make_dirs(out)
    set_threads(threads)
    settings = settings_for(args)
    demo = Demo(out, settings, progress=not args.no_progress, fresh=args.fresh)
    t0 = time.perf_counter()
    n = len(STAGES) + 1
    records = {}
    for k, (name, fn) in enumerate(STAGES, start=1):
        records[name] = demo.run(k, n, name, lambda fn=fn: fn(demo))
    report = write_report(out, records, quick=args.quick)
    wall = time.perf_counter() - t0
    print(f"[{n}/{n}] report: {report}")
    results = {"stages": {k: {kk: vv for kk, vv in r.items() if kk != "settings"} for k, r in records.items()},
               "quick": args.quick, "seed": args.seed, "wall_s": wall}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    print(f"done in {wall:.0f} s; open {report}")
    if args.json:
        figures = {"best_y_" + s["stage"]: s["cmaes_y"] for s in records["cmaes"]["searches"]}
        figures.update({f"velocity_median_y[{r['controller']}]": r["median_y"] for r in records["comparison"]["rows"]})
        figures["reused"] = demo.reused
        emit_json(figures | {"wall_s": wall})
    return 0
