"""How strongly each ADA pipeline holds a trained discriminator back: ``r = E[sign D(aug(x))]`` at chosen ``p``.

ADA's controller raises p until r_t, D's mean sign on the (augmented) training images, comes down to its target.
When p reaches 1 and r_t is still above the target, the pipeline has no strength left. :func:`ada_strength` takes a
run's D (as last checkpointed) and measures r on its training frames and on frames of the same dataset it never saw,
for each pipeline (:data:`generative.gan.ada.PIPELINES`) at each p: at equal p, a lower r on the training frames is a
stronger pipeline, and the gap between training and unseen frames at p = 0 is how far D has come to know its
training frames (the ADA paper's first overfitting heuristic, r_v, compares the same two). Frames are shuffled
(seeded) into batches of the run's batch size, as training draws them, because D's minibatch standard deviation
looks at groups of consecutive images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from generative.data.armlab import is_armlab_dataset, load_tensors, open_images
from generative.data.images import DataError
from generative.gan.ada import PIPELINES, ada_augment
from generative.gan.model import build_discriminator
from generative.gan.sample import _load_run
from generative.training import CHECKPOINT

__all__ = ["ada_strength"]


def _frames(ds: Any, idx: Sequence[int]) -> dict[str, torch.Tensor]:
    t = load_tensors(Subset(ds, list(idx)))
    return {"image": t["image"].float() / 127.5 - 1.0, "class_id": t["class_id"].long(), "target": t["target"].float()}


@torch.no_grad()
def _mean_sign(D: torch.nn.Module, data: dict[str, torch.Tensor], p: float, pipeline: str, batch: int, seed: int,
               use_y: bool, use_c: bool) -> tuple[float, float]:
    n = len(data["image"])
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    signs = logits = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the augmentations' draws: the same for every pipeline and p
        for i in range(0, n, batch):
            j = order[i:i + batch]
            c = data["target"][j] if use_c else None
            x, c = ada_augment(data["image"][j], c, p, pipeline)
            out = D(x, data["class_id"][j] if use_y else None, c).float()
            signs += float(torch.sign(out).sum())
            logits += float(out.sum())
    return signs / n, logits / n


def ada_strength(run_dir: str | Path, data_dir: str | Path, ps: Sequence[float] = (0.0, 0.5, 1.0), n: int = 500,
                 seed: int = 0, draws: int = 2) -> dict[str, Any]:
    """r = E[sign D(aug(x))] of the run's D (last checkpoint) per pipeline and p, on up to ``n`` of the run's
    training frames (the first ``frames`` of ``data_dir``, as its config records them) and ``n`` frames after them
    (``unseen``; absent when the dataset has no more), each the mean of ``draws`` seeded augmentations.

    Returns ``steps``, ``p_run`` (the controller's p at the checkpoint), ``pipeline_run``, ``target``, ``n_train``,
    ``n_unseen``, ``ps``, ``r`` (``{"train"|"unseen": {pipeline: {p: r}}}``) and ``logit``, the mean of D's
    logits in the same layout (it does not saturate where r does: a D that calls every real image real has r = 1
    on training and unseen frames alike, but still scores its training frames higher).

    Compare pipelines and frame sets with each other, at one D: r of a frozen D is not the r_t the controller
    logged. Between two steps D's outputs drift as a whole (a D step moves every logit, and r counts signs), so the
    r_t of training, measured step by step on a D that moves, reads higher or lower than the r of one checkpoint
    (session 26: 0.47 for a checkpoint whose next forty steps logged 0.51-0.71).
    A ValueError in one sentence for a run that is not a stylegan2 ADA run, a dataset that is not the run's, or a
    p outside [0, 1]."""
    ps = [float(p) for p in ps]
    if not ps or any(not (math.isfinite(p) and 0.0 <= p <= 1.0) for p in ps):
        raise ValueError(f"p must be numbers in [0, 1], got {ps}")
    if int(n) < 1 or int(draws) < 1:
        raise ValueError(f"n and draws must be at least 1, got {n} and {draws}")
    ps = sorted(set(ps))
    cfg, ckpt = _load_run(run_dir, "cpu")
    if cfg.arch != "stylegan2" or not cfg.ada:
        raise ValueError(f"{run_dir} is not a stylegan2 run trained with --ada (arch {cfg.arch}, ada {cfg.ada})")
    root = Path(data_dir)
    if not root.is_dir() or not is_armlab_dataset(root):
        raise DataError(f"{str(root)!r} is not an armlab dataset folder (no manifest.json)")
    ds = open_images(root, cfg.size)
    frames = int(cfg.data.get("frames") or len(ds))
    if frames > len(ds):
        raise DataError(f"the run trained on {frames} frames but {str(root)!r} holds {len(ds)}: not its dataset")
    D = build_discriminator(cfg)
    try:
        D.load_state_dict(ckpt["modules"]["D"])
    except RuntimeError as exc:
        raise DataError(f"checkpoint {Path(run_dir) / CHECKPOINT} does not fit its settings") from exc
    D.eval().requires_grad_(False)
    batch = int((ckpt.get("config") or {}).get("batch_size") or 32)
    sets = {"train": _frames(ds, range(min(frames, n)))}
    if len(ds) > frames:
        sets["unseen"] = _frames(ds, range(frames, min(len(ds), frames + n)))
    use_y, use_c = bool(cfg.n_classes), bool(cfg.cond_dim)
    r: dict[str, dict[str, dict[str, float]]] = {}
    logit: dict[str, dict[str, dict[str, float]]] = {}
    for name, data in sets.items():
        r[name], logit[name] = {}, {}
        for pipe in PIPELINES:
            r[name][pipe], logit[name][pipe] = {}, {}
            for p in ps:
                got = [_mean_sign(D, data, p, pipe, batch, seed + k, use_y, use_c) for k in range(draws)]
                r[name][pipe][f"{p:g}"] = sum(g[0] for g in got) / draws
                logit[name][pipe][f"{p:g}"] = sum(g[1] for g in got) / draws
    ada_state = (ckpt.get("extra") or {}).get("arch_state", {}).get("ada", {})
    return {"run": str(run_dir), "steps": int(ckpt.get("step", 0)), "p_run": ada_state.get("p"),
            "pipeline_run": cfg.ada_pipeline, "target": cfg.ada_target, "n_train": len(sets["train"]["image"]),
            "n_unseen": len(sets["unseen"]["image"]) if "unseen" in sets else 0, "ps": ps, "r": r, "logit": logit}
