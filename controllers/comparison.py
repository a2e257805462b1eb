"""The lecture's comparison: optimization, regression and reinforcement learning on the same held-out contexts.

For each stage of the open-loop reach task every controller is evaluated on the same held-out
contexts (`controllers.evaluation`): the zero signal (the floor), CMA-ES per context at several
budgets, regression (an MLP from the observation to x) trained on growing numbers of contexts
that CMA-ES solved first, and RL agents at growing training budgets (plus, optionally, a
closed-loop SAC+HER row on the ``state`` stage). Each row counts the total simulated episodes a
controller needs for ``decisions`` decisions (training + deployment).

`run_comparison` keeps finished rows in a `ResultStore` (``rows.json``, written atomically after
each row), so a killed run resumes where it stopped; `mapping_comparison` is the demo's small
version on one stage. `ordered` and `markdown` present the rows; the command line (``armlab
compare``, ``armlab demo``) parses arguments, prints and plots.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controllers.evaluation import (
    COLUMNS,
    METRICS_HEADER,
    Controller,
    EvalResult,
    cmaes_controller,
    evaluate,
    held_out_contexts,
    metric_cells,
    zero_controller,
)
from robot_env import OPEN_LOOP_IDS, STAGES
from robot_env.io.atomic import atomic_write_text
from robot_env.io.errors import DataError, ParamError

CLOSED_LOOP_ENV = "armlab/ReachState-v0"  #: the closed-loop row's env (state stage)


class ResultStore:
    """Finished result rows, persisted atomically to ``path`` after each one (resume = skip what is done).

    ``settings`` identify the comparison: a file made with other settings is refused (`ParamError`
    on ``out``, the folder that holds it)."""

    def __init__(self, path: str | Path, settings: dict) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                raise DataError(f"{self.path} is not valid JSON; move it away to start the comparison "
                                 f"afresh.") from None
            if saved.get("settings") != settings:
                raise ParamError("out", f"{self.path} holds a comparison run with other settings; use another "
                                        f"{{name}}.")
            self.rows = saved["rows"]
        self.settings = settings

    def done(self, stage: str, name: str, tag: str | None = None) -> dict | None:
        """The finished row of ``name`` on ``stage`` (with ``tag``, only a row made under that tag)."""
        return next((r for r in self.rows if r["stage"] == stage and r["controller"] == name
                     and (tag is None or r.get("tag") == tag)), None)

    def add(self, row: dict) -> None:
        self.rows = [r for r in self.rows if (r["stage"], r["controller"]) != (row["stage"], row["controller"])]
        self.rows.append(row)
        atomic_write_text(self.path, json.dumps({"settings": self.settings, "rows": self.rows}, indent=1))


def comparison_row(stage: str, family: str, budget: float, result: EvalResult, decisions: int) -> dict:
    """``result`` as a comparison row: its metrics, stage, family, budget and total simulated episodes."""
    row = result.row()
    row.update(stage=stage, family=family, budget=budget,
               total_episodes=result.training_episodes + decisions * result.episodes_per_decision)
    return row


def rl_defaults_tag() -> str:
    """A short hash of ``controllers/hyperparams.yml``: RL rows and runs made under other defaults are redone."""
    from controllers.rl import HYPERPARAMS_FILE

    return hashlib.sha256(HYPERPARAMS_FILE.read_bytes()).hexdigest()[:8]


@dataclass
class Comparison:
    """What `run_comparison` runs (the defaults of ``armlab compare``'s full run)."""

    out: Path  #: the folder of rows.json and the RL runs
    robot: str = "arm3"
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    contexts: int = 200  #: held-out contexts per stage
    decisions: int = 200  #: deployment decisions counted in the total
    cmaes_budgets: list[int] = field(default_factory=lambda: [30, 100, 300, 1000])
    regression_sizes: list[int] = field(default_factory=lambda: [25, 100, 400])
    regression_budget: int = 300  #: CMA-ES evaluations per regression example
    regression_epochs: int = 2000
    rl_algos: list[str] = field(default_factory=lambda: ["sac", "ppo"])
    rl_steps: list[int] = field(default_factory=lambda: [2000, 10000, 50000])
    closed_loop_steps: int = 30000  #: SAC+HER closed-loop steps on the state stage (0: none)
    seed: int = 0
    seeds: int = 1  #: RL agents trained with seeds seed, seed + 1, ...: rows per seed and `aggregate_seeds` over them
    progress: bool = True


def run_comparison(cmp: Comparison, settings: dict, report: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) the comparison ``cmp``; ``settings`` identify it in ``rows.json``. Each finished row is
    reported as one line through ``report``. Returns every row of the store."""
    from controllers.regression import collect, fit, regression_controller

    out = Path(cmp.out)
    rows = ResultStore(out / "rows.json", settings)
    kw = {"robot": cmp.robot}
    for stage in cmp.stages:
        env_id = OPEN_LOOP_IDS[stage]
        contexts = held_out_contexts(env_id, n=cmp.contexts, **kw)

        def run(name, family, budget, make_controller, env=None, tag=None, train_s=0.0, _stage=stage, _env=env_id,
                _ctx=contexts):
            if rows.done(_stage, name, tag):
                return
            eval_id, eval_kw = env or (_env, kw)
            t0 = time.perf_counter()
            result = evaluate(make_controller(), eval_id, _ctx, **eval_kw)
            row = comparison_row(_stage, family, budget, result, cmp.decisions)
            row["wall_s"] = time.perf_counter() - t0
            row["train_s"] = float(train_s)
            row["controller"] = name
            row["ys"] = [float(y) for y in result.ys]  # the per-context distances: performance profiles
            if tag is not None:
                row["tag"] = tag
            rows.add(row)
            report(f"  {_stage:<9}{name:<24} median y {row['median_y'] * 1000:8.1f} mm   success@2cm "
                   f"{row['success_2cm']:5.0%}   total episodes {row['total_episodes']:>12,.0f}")

        report(f"stage {stage}: {len(contexts)} held-out contexts of {env_id} ({cmp.robot})")
        run("zero signal", "zero", 0, zero_controller)
        for b in cmp.cmaes_budgets:
            run(f"CMA-ES {b}", "CMA-ES", b, lambda b=b: cmaes_controller(budget=b, seed=cmp.seed))

        sizes = [n for n in cmp.regression_sizes if not rows.done(stage, f"regression {n}")]
        if sizes:
            t0 = time.perf_counter()
            ex = collect(env_id, max(sizes), budget=cmp.regression_budget, seed=cmp.seed, progress=cmp.progress, **kw)
            per_example = (time.perf_counter() - t0) / max(sizes)
            for n in sizes:
                t1 = time.perf_counter()
                reg = fit(ex.obs[:n], ex.x[:n], epochs=cmp.regression_epochs, seed=cmp.seed)
                cost = int(ex.costs[:n].sum())  # the examples are the cost
                run(f"regression {n}", "regression", n, lambda reg=reg, cost=cost: regression_controller(reg, cost),
                    train_s=n * per_example + time.perf_counter() - t1)

        tag = rl_defaults_tag()
        for k in range(cmp.seeds):  # the first seed keeps the folders and row names of a one-seed comparison
            seed, sub = cmp.seed + k, ("" if k == 0 else f"-seed{cmp.seed + k}")
            for algo in cmp.rl_algos:
                rl_rows(run, out / "rl" / tag / f"{stage}{sub}", algo, env_id, cmp.rl_steps, kw, seed, cmp.progress,
                        tag, seed_note=k > 0)
            if stage == "state" and cmp.closed_loop_steps:
                # the settings that learn best in docs/benchmarks.md: log reward, history, HER "final"
                closed_kw = dict(kw, obs_type="dict", reward_type="log", history=True)
                rl_rows(run, out / "rl" / tag / f"state-closed-loop{sub}", "sac", CLOSED_LOOP_ENV,
                        [cmp.closed_loop_steps], closed_kw, seed, cmp.progress, tag, label="SAC+HER closed loop",
                        eval_env=(CLOSED_LOOP_ENV, closed_kw), seed_note=k > 0)
    return rows.rows


def rl_rows(run, folder: Path, algo: str, env_id: str, budgets: list[int], env_kwargs: dict, seed: int,
            progress: bool, tag: str, label: str | None = None, eval_env: tuple | None = None,
            seed_note: bool = False) -> None:
    """Train one agent up through ``budgets`` (resuming its run between budgets, and after a kill) and
    evaluate it at each budget with ``run(name, family, budget, make_controller, ...)``. The training time up
    to each budget is kept in ``train_s.json`` beside the runs. ``seed_note`` adds the seed to the row names
    (the rows of further seeds: same family, one row each)."""
    from controllers import rl

    name = label or algo.upper()
    times_file = folder / algo / "train_s.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    for budget in sorted(budgets):
        existing = sorted((folder / algo).glob("*/config.yml"))
        run_dir = existing[0].parent if existing else None
        if run_dir is None or not any(s >= budget for s in rl.checkpoint_steps(run_dir)):
            res = rl.train(algo, env_id, budget, folder=folder, env_kwargs=env_kwargs, seed=seed, eval_freq=0,
                           save_freq=0, resume=run_dir is not None, progress_bar=progress)
            run_dir = res.run_dir
            before = max((v for k, v in times.items() if int(k) < budget), default=0.0)
            times[str(budget)] = before + res.wall_s
            atomic_write_text(times_file, json.dumps(times))
        # on-policy agents train in whole rollouts, so the checkpoint may lie a little past the budget
        steps = min(s for s in rl.checkpoint_steps(run_dir) if s >= budget)

        def make(run_dir=run_dir, steps=steps):
            ctrl = rl.policy_controller(run_dir, checkpoint_steps=steps)
            ctrl.name = f"{name} {steps:,} steps"
            return ctrl

        run(f"{name} {budget:,} steps" + (f" seed {seed}" if seed_note else ""), name, budget, make, tag=tag,
            train_s=times.get(str(budget), 0.0),
            **({"env": eval_env} if eval_env else {}))


def mapping_comparison(rl_folder: str | Path, rl_steps: int, n_contexts: int, seed: int = 0, progress: bool = True,
                       env_id: str = "armlab/ReachSignalVelocity-v0", robot: str = "arm2", examples: int = 30,
                       budget: int = 150, epochs: int = 1500) -> list[EvalResult]:
    """One stage, one of each family on the same ``n_contexts`` held-out contexts: the zero signal, CMA-ES
    per context (``budget``), regression from ``examples`` optimized contexts and SAC trained for ``rl_steps``
    into a fresh, seeded run in ``rl_folder`` (removed first, so the figures are reproducible)."""
    import shutil

    from tqdm import tqdm

    from controllers import rl
    from controllers.regression import collect, fit, regression_controller

    kw = {"robot": robot}
    contexts = held_out_contexts(env_id, n=n_contexts, **kw)
    rl_folder = Path(rl_folder)
    if rl_folder.exists():
        shutil.rmtree(rl_folder)
    res = rl.train("sac", env_id, rl_steps, folder=rl_folder, env_kwargs=kw, seed=seed, eval_freq=0, save_freq=0,
                   progress_bar=progress)
    ex = collect(env_id, examples, budget=budget, seed=seed, **kw)
    reg = fit(ex.obs, ex.x, epochs=epochs, seed=seed)
    controllers: list[Controller] = [
        zero_controller(), cmaes_controller(budget=budget, seed=seed),
        regression_controller(reg, ex.episodes, name=f"regression ({len(ex.obs)} examples)"),
        rl.policy_controller(res.run_dir)]
    controllers[-1].name = f"SAC ({rl_steps:,} steps, {res.wall_s:.0f} s)"
    return [evaluate(c, env_id, contexts, **kw) for c in tqdm(controllers, desc="evaluate", disable=not progress)]


def ordered(rows: list[dict]) -> list[dict]:
    """Rows by stage, then zero signal, CMA-ES, regression, the RL agents (open loop, then closed loop), then budget
    (a resumed comparison appends redone rows at the end of rows.json)."""
    first = {"zero": 0, "CMA-ES": 1, "regression": 2}
    rl = list(dict.fromkeys(r["family"] for r in rows if r["family"] not in first))
    rl.sort(key=lambda f: "closed loop" in f)
    rank = {**first, **{f: 3 + k for k, f in enumerate(rl)}}
    return sorted(rows, key=lambda r: (STAGES.index(r["stage"]) if r["stage"] in STAGES else len(STAGES),
                                       rank[r["family"]], r["budget"]))


def markdown(rows: list[dict]) -> str:
    """The comparison table (Markdown): stage, controller, the shared metrics, total episodes and times."""
    lines = [f"| stage | controller | {METRICS_HEADER} | total episodes | training time | deployment time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        train = f"{r['train_s']:.0f} s" if r.get("train_s") else "—"
        lines.append(f"| {r['stage']} | {r['controller']} | {metric_cells(r)} | {r['total_episodes']:,.0f} "
                     f"| {train} | {r['wall_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def aggregate_seeds(rows: list[dict], reps: int = 2000, seed: int = 0) -> list[dict]:
    """One row per (stage, family, budget) that several seeds trained: the IQM over seeds of each metric, with
    ``intervals`` (`controllers.intervals.summarize_runs`: IQM, mean, median and 95 % bootstrap intervals over
    seeds) and ``seeds``. Families of one seed (CMA-ES, regression, the zero signal) are left out."""
    from controllers.intervals import interval_estimates, summarize_runs

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["family"] not in ("zero", "CMA-ES", "regression"):
            groups.setdefault((r["stage"], r["family"], r["budget"]), []).append(r)
    out = []
    for (_, family, budget), group in groups.items():
        if len(group) < 2:
            continue
        intervals = summarize_runs(group, keys=("success_2cm", "success_1cm", "median_y", "p90_y"), reps=reps,
                                   seed=seed)
        row = {k: v for k, v in group[0].items() if k != "ys"}
        row.update({k: est["iqm"]["value"] for k, est in intervals.items()}, intervals=intervals, seeds=len(group),
                   controller=f"{family} {budget:,} steps ({len(group)} seeds, IQM)",
                   train_s=interval_estimates([r.get("train_s", 0.0) for r in group], reps=reps,
                                              seed=seed)["iqm"]["value"])
        out.append(row)
    return out


def interval_markdown(rows: list[dict]) -> str:
    """The `aggregate_seeds` rows as a Markdown table: IQM [95 % interval] of each metric over seeds."""
    from controllers.intervals import interval_text

    lines = ["| stage | controller | seeds | success@2cm IQM [95 % CI] | success@1cm IQM [95 % CI] "
             "| median y IQM [95 % CI] | mean success@2cm [95 % CI] | training time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        iv = r["intervals"]
        lines.append(f"| {r['stage']} | {r['controller']} | {r['seeds']} "
                     f"| {interval_text(iv['success_2cm']['iqm'], 100, '.1f', ' %')} "
                     f"| {interval_text(iv['success_1cm']['iqm'], 100, '.1f', ' %')} "
                     f"| {interval_text(iv['median_y']['iqm'], 1000, '.1f', ' mm')} "
                     f"| {interval_text(iv['success_2cm']['mean'], 100, '.1f', ' %')} | {r['train_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def seed_profiles(rows: list[dict], reps: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Per stage, the performance profile (`controllers.intervals.performance_profile`) of each RL family at its
    largest budget trained with several seeds: ``{stage: {"SAC 10,000 steps": profile, ...}}``."""
    from controllers.intervals import performance_profile

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["family"] not in ("zero", "CMA-ES", "regression") and r.get("ys"):
            groups.setdefault((r["stage"], r["family"], r["budget"]), []).append(r)
    largest: dict[tuple, float] = {}
    for (stage, family, budget), group in groups.items():
        if len(group) >= 2:
            largest[(stage, family)] = max(budget, largest.get((stage, family), budget))
    out: dict[str, dict] = {}
    for (stage, family), budget in largest.items():
        group = groups[(stage, family, budget)]
        out.setdefault(stage, {})[f"{family} {budget:,} steps"] = performance_profile(
            [r["ys"] for r in group], reps=reps, seed=seed)
    return out


CSV_COLUMNS = ("stage", *COLUMNS, "family", "budget", "total_episodes", "train_s")  #: compare.csv's columns

__all__ = ["CSV_COLUMNS", "Comparison", "ResultStore", "aggregate_seeds", "comparison_row", "interval_markdown",
           "mapping_comparison", "markdown", "ordered", "rl_defaults_tag", "rl_rows", "run_comparison", "seed_profiles"]
