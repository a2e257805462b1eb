"""Training, loading, sampling and evaluating a StackGAN run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generative import trainer_defaults
from generative.runs import check_resume, load_run, pick_device, read_summary, write_summary
from generative.stackgan.task import StackGANConfig, StackGANTask, build_generators, stack_generate
from generative.text import (
    Vocabulary,
    drawn_prompts,
    fit_layout_head,
    prepare_text,
    prompt_report,
    text_data,
)
from generative.text import side_margin as text_side_margin
from generative.training import CHECKPOINT, TrainConfig, Trainer, load_checkpoint
from robot_env.io.dataset_format import MANIFEST
from robot_env.io.errors import ConfigError, DataError, ParamError
from robot_env.io.hashing import sha256_file

__all__ = ["TRAIN_DEFAULTS", "StackGAN", "evaluate_stackgan", "load_stackgan", "sample_stackgan", "train_stackgan"]

#: The trainer settings of ``armlab stackgan train`` that differ from :class:`~generative.training.TrainConfig`'s.
TRAIN_DEFAULTS = trainer_defaults.STACKGAN


def _saved_config(out: Path) -> StackGANConfig | None:
    """The settings of the StackGAN run in ``out`` (None when there is none yet)."""
    if not (out / CHECKPOINT).is_file():
        return None
    saved = load_checkpoint(out / CHECKPOINT).get("task_config") or {}
    if "mismatch_weight" not in saved:
        raise ConfigError(f"{out} holds a checkpoint that is not a StackGAN run; use another output folder")
    return StackGANConfig.from_dict(saved)


def _check_resume(out: Path, cfg: StackGANConfig, old: StackGANConfig | None) -> bool:
    if old is None:
        return False
    check_resume(out, cfg.model_dict(), old.model_dict(), cfg.data, old.data)
    return True


def train_stackgan(data_dir: str | Path, train: TrainConfig, size: int = 64, ch: int = 16, z_dim: int = 32,
                   c_dim: int = 32, lr: float = 2e-4, kl_weight: float = 1.0, text_steps: int = 300,
                   limit: int | None = None, layout: bool = True, layout_steps: int = 400,
                   refine: bool = True, aux_class: float | None = None) -> dict[str, Any]:
    """Train a StackGAN on the armlab dataset at ``data_dir`` into ``train.out`` (captions from the labels, four
    phrasings per frame seeded by ``train.seed``; the text encoder pre-trained for ``text_steps`` steps and, with
    ``layout``, the layout head fitted on its embeddings for ``layout_steps`` steps, or both from the checkpoint
    when resuming; the vocabulary in ``out/vocab.json``; ``refine``: stage II corrects stage I's enlarged image;
    ``aux_class``: the local class loss's weight, None = 1 for a new run with a layout, 0 without, and a resumed
    run's own).
    The same call after a kill resumes; a larger ``steps`` continues. Returns (and writes to ``out/summary.json``)
    the trainer's summary plus ``size``, ``stage1``, ``n_train``, ``params``, ``text_pretrain_loss`` and
    ``layout_pretrain_loss``."""
    t0 = time.perf_counter()
    out = Path(train.out)
    data, texts, labels, classes = text_data(data_dir, size, limit=limit, seed=train.seed, progress=train.progress)
    prior = (out / CHECKPOINT).is_file()
    vocab, encoder, tokens, losses = prepare_text(texts, labels, steps=text_steps, seed=train.seed,
                                                  pretrain=not prior)
    manifest = Path(data_dir) / MANIFEST
    info = {"path": str(data_dir), "frames": len(data["image"]), "limit": limit,
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}
    old = _saved_config(out)
    if aux_class is None and old is not None:  # a resumed run keeps its own (a new one: 1 with a layout, else 0)
        aux_class = old.aux_class
    cfg = StackGANConfig(size=size, ch=ch, z_dim=z_dim, c_dim=c_dim, lr=lr, kl_weight=kl_weight,
                         classes=tuple(classes), data=info, layout=layout, refine=refine, aux_class=aux_class,
                         text_config={"vocab": vocab.to_json(), "encoder": encoder.arguments(),
                                      "pretrain_steps": text_steps})
    _check_resume(out, cfg, old)
    layout_state, layout_losses = None, []
    if layout and not prior:
        layout_state, layout_losses = fit_layout_head(encoder, tokens, data["class_id"], data["target"],
                                                      len(classes), steps=layout_steps, seed=train.seed)
    task = StackGANTask(cfg, encoder.state_dict() if losses else None, init_seed=train.seed,
                        class_ids=data["class_id"], targets=data["target"], layout_state=layout_state)
    summary = Trainer(task, {**data, "tokens": tokens}, train).fit()
    vocab.save(out / "vocab.json")
    summary.update({"out": str(out), "size": size, "stage1": cfg.stage1, "n_train": len(data["image"]),
                    "aux_class": cfg.aux_class,
                    "batch_size": int(train.batch_size),
                    "params": {k: sum(p.numel() for p in m.parameters()) for k, m in task.modules().items()},
                    "text_pretrain_loss": [losses[0], losses[-1]] if losses else None,
                    "layout_pretrain_loss": [layout_losses[0], layout_losses[-1]] if layout_losses else None,
                    "total_wall_time_s": time.perf_counter() - t0})
    return write_summary(out, summary)


class StackGAN:
    """A trained run's frozen encoder, layout head (None for a run without one), EMA generators and vocabulary:
    :meth:`generate` draws both stages."""

    def __init__(self, cfg: StackGANConfig, text, layout, g1, g2, step: int, extra: dict[str, Any]):
        self.cfg, self.text, self.layout, self.g1, self.g2 = cfg, text, layout, g1, g2
        self.step, self.extra = int(step), extra or {}
        self.vocab = Vocabulary.from_json(cfg.text_config["vocab"])

    def tokens(self, prompts: Any, n: int) -> torch.Tensor:
        """``(n, L)`` token ids of one prompt or one per image (unknown words -> ``<unk>``)."""
        return self.vocab.prompts(prompts, n)

    def generate(self, prompts: Any, n: int, gen: torch.Generator, batch_size: int = 64,
                 side_margin: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(stage I, stage II)`` images in ``[-1, 1]`` of ``n`` images for ``prompts``; ``side_margin``: how far a
        drawn layout's target keeps from the side cuts (image widths; None: ``generative.text.SIDE_MARGIN``)."""
        return stack_generate(self.text, self.g1, self.g2, self.tokens(prompts, n), gen, self.cfg.z_dim, batch_size,
                              layout=self.layout, cfg=self.cfg, side_margin=text_side_margin(side_margin))


def _read_config(ckpt: dict[str, Any]) -> StackGANConfig:
    tc = ckpt.get("task_config")
    if not isinstance(tc, dict) or "mismatch_weight" not in tc:
        raise TypeError("no StackGAN settings")
    return StackGANConfig.from_dict(tc)


def load_stackgan(run_dir: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> StackGAN:
    """The :class:`StackGAN` of a run (EMA generators with ``ema``); a one-sentence error for a missing, foreign
    or broken run."""
    dev = pick_device(device)
    cfg, ckpt = load_run(run_dir, dev, _read_config, "StackGAN", "StackGANTask")
    if not cfg.text_config:
        raise DataError(f"run {run_dir} has no vocabulary (text_config); train it again")
    Vocabulary.from_json(cfg.text_config["vocab"])  # an empty or broken vocabulary: one sentence
    text, layout, g1, g2 = build_generators(cfg)
    try:
        text.load_state_dict(ckpt["modules"]["text"])
        if layout is not None:
            layout.load_state_dict(ckpt["modules"]["layout"])
        for name, g in (("G1", g1), ("G2", g2)):
            state = (ckpt.get("ema") or {}).get(name) if ema else None
            g.load_state_dict(state if state is not None else ckpt["modules"][name])
    except (KeyError, RuntimeError) as exc:
        raise DataError(f"checkpoint {Path(run_dir) / CHECKPOINT} does not fit its StackGAN settings "
                        f"({str(exc).splitlines()[0]})") from exc
    text, g1, g2 = (m.to(dev).eval().requires_grad_(False) for m in (text, g1, g2))
    layout = layout.to(dev).eval().requires_grad_(False) if layout is not None else None
    return StackGAN(cfg, text, layout, g1, g2, step=int(ckpt.get("step", 0)), extra=ckpt.get("extra") or {})


def sample_stackgan(run_dir: str | Path | StackGAN, n: int, prompt: Any = None, seed: int = 0, device: Any = "cpu",
                    ema: bool = True, side_margin: float | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(stage I uint8 (n, s/2, s/2, 3), stage II uint8 (n, s, s, 3), prompts)`` of a run folder (or a loaded
    :class:`StackGAN`); without ``prompt`` the prompts name training frames' class and side. ``side_margin``: see
    :meth:`StackGAN.generate`. Everything random is a function of ``seed``."""
    if int(n) < 1:
        raise ParamError("n", f"{{name}} must be at least 1, got {n}")
    model = run_dir if isinstance(run_dir, StackGAN) else load_stackgan(run_dir, device, ema)
    gen = torch.Generator().manual_seed(int(seed))
    prompts = drawn_prompts(model.cfg.classes, model.extra, int(n), gen) if prompt is None else prompt
    x1, x2 = model.generate(prompts, int(n), gen, side_margin=side_margin)
    prompts = [prompts] * int(n) if isinstance(prompts, str) else list(prompts)

    def u8(x: torch.Tensor) -> np.ndarray:
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    return u8(x1), u8(x2), prompts


def evaluate_stackgan(run_dir: str | Path, data_dir: str | Path, n: int = 256, seed: int = 0, quick: bool = False,
                      probe_steps: int | None = None, device: Any = "cpu", ema: bool = True,
                      side_margin: float | None = None) -> dict[str, Any]:
    """The probe's reading of both stages (:func:`generative.text.prompt_report` for each, with the same prompts,
    noise and probe; stage I's 32 px images enlarged to the dataset's 64 for the probe): ``stage2`` and
    ``stage1`` reports, and ``stage2_beats_stage1`` on ``pos_err_fake_norm`` and ``fid_custom``; the layouts drawn
    ``side_margin`` from the side cuts (None: ``generative.text.SIDE_MARGIN``; the report's ``side_margin``)."""
    from generative.metrics import probe_for

    if int(n) < 2:
        raise ParamError("n", f"{{name}} must be at least 2 (FID needs two images), got {n}")
    t0 = time.perf_counter()
    margin = text_side_margin(side_margin)
    dev = pick_device(device)
    model = load_stackgan(run_dir, dev, ema)
    probe = probe_for(Path(data_dir), model.cfg.size, quick=quick, steps=probe_steps, device=dev)
    stages = {}
    for k, name in ((0, "stage1"), (1, "stage2")):
        def generate(prompts: list[str], gen: torch.Generator, k: int = k) -> torch.Tensor:
            return model.generate(prompts, len(prompts), gen, side_margin=margin)[k]

        stages[name] = prompt_report(generate, data_dir, model.cfg.size, n=n, seed=seed, probe=probe,
                                     classes=model.cfg.classes)
    s1, s2 = stages["stage1"], stages["stage2"]

    def better(key: str) -> bool | None:
        a, b = s2.get(key), s1.get(key)
        return None if a is None or b is None else bool(a < b)

    summary = read_summary(run_dir) or {}
    return {"stage2": s2, "stage1": s1, "steps": model.step, "size": model.cfg.size,
            "side_margin": margin, "stage2_beats_stage1": {"pos_err_fake_norm": better("pos_err_fake_norm"),
                                    "fid_custom": better("fid_custom")},
            "train_images_per_s": summary.get("images_per_s"), "eval_seconds": time.perf_counter() - t0,
            "probe_from_cache": bool(getattr(probe, "from_cache", False))}

