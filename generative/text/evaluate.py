"""Do a text model's samples show what their prompts say? The probe reads class and place from them.

:func:`prompt_report` draws ``n`` real frames (seeded), makes one caption per frame from its label (the phrasing
drawn as in training, so templates and synonyms vary), asks the model for one image per caption, and compares:

* ``generation_report`` of the probe (``generative.metrics``) with the *caption's* class and the frame's target
  as the fakes' conditions: ``class_acc_fake`` against ``class_acc_real`` (the probe on the real renders) and
  their ratio ``class_acc_ratio`` (the issue's target: >= 0.9), ``pos_err_*`` (to the captioned frame's target;
  a caption names a third of the table, not a point, so this is loose), ``fid_custom``, diversity, modes;
* ``side_acc_fake``: the fraction of samples whose target the probe places on the prompt's side (left / centre /
  right of :func:`generative.text.side_of`; target >= 0.9) and ``side_acc_real``, the same for the real renders
  with their own captions (the probe's floor).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from generative.data.armlab import load_tensors, open_images
from generative.text.captions import caption_conditions, captions, side_of
from generative.text.data import frame_labels
from robot_env.io.dataset_format import MANIFEST
from robot_env.io.errors import DataError

__all__ = ["prompt_frames", "prompt_report", "side_accuracy"]


def prompt_frames(data_dir: str | Path, size: int, n: int, seed: int
                  ) -> tuple[dict[str, torch.Tensor], list[str], torch.Generator]:
    """``n`` real frames (at most all those with a class and a target; drawn with ``seed``, kept in file order),
    one caption for each, and the generator after the draw (for the model's noise)."""
    root = Path(data_dir)
    if not (root / MANIFEST).is_file():
        raise DataError(f"{str(root)!r} is not an armlab dataset: no manifest.json (the probe needs its labels)")
    ds = open_images(root, size)
    labels = frame_labels(ds)
    ok = [i for i, r in enumerate(ds.records)
          if 0 <= r["class_id"] < len(ds.classes) and all(v == v for v in r["pixel_norm"])]
    if not ok:
        raise DataError(f"dataset {str(root)!r} holds no frames with a class and a target to caption")
    gen = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(len(ok), generator=gen)[: min(int(n), len(ok))].sort().values.tolist()
    idx = [ok[i] for i in pick]
    real = load_tensors(Subset(ds, idx))
    k = torch.randint(0, 4, (len(idx),), generator=gen).tolist()
    prompts = [captions(labels[i], 4, seed, i)[j] for i, j in zip(idx, k)]
    return real, prompts, gen


def side_accuracy(probe: Any, images: torch.Tensor, prompts: list[str]) -> float | None:
    """The fraction of ``images`` (uint8 ``(N, 3, H, W)``) whose target the probe places on the side its prompt
    names (prompts without a side are left out; None when none has one)."""
    from generative.metrics.probe import _probe_outputs

    sides = [caption_conditions(p)["side"] for p in prompts]
    keep = [i for i, s in enumerate(sides) if s is not None]
    if not keep:
        return None
    u = _probe_outputs(probe, images[keep])["pos"][:, 0].tolist()
    return sum(side_of(x) == sides[i] for x, i in zip(u, keep)) / len(keep)


def prompt_report(generate: Callable[[list[str], torch.Generator], torch.Tensor], data_dir: str | Path, size: int,
                  n: int = 256, seed: int = 0, probe: Any = None, quick: bool = False,
                  probe_steps: int | None = None, device: Any = "cpu", classes: Any = None) -> dict[str, Any]:
    """The probe's reading of prompt-conditioned samples (module docstring). ``generate(prompts, gen)`` returns one
    image per prompt, floats in ``[-1, 1]`` ``(N, 3, h, w)`` (resized to ``size`` here when ``h != size``: a
    stage-I StackGAN image is judged at the real frames' size). Returns ``generation_report``'s keys plus
    ``side_acc_fake``, ``side_acc_real``, ``prompts`` (the first eight) and ``n_prompts``."""
    from generative.metrics import generation_report, probe_for

    real, prompts, gen = prompt_frames(data_dir, size, n, seed)
    if probe is None:
        probe = probe_for(Path(data_dir), size, quick=quick, steps=probe_steps, device=device)
    x = generate(prompts, gen).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    fake_img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    names = [c.lower() for c in (classes or open_images(Path(data_dir), size).classes)]
    cids = [caption_conditions(p, names)["class_id"] for p in prompts]
    fake = {"image": fake_img, "class_id": torch.tensor([-1 if c is None else c for c in cids]),
            "target": real["target"].float()}
    report = generation_report(probe, real, fake, seed=int(seed))
    report.update({"side_acc_fake": side_accuracy(probe, fake_img, prompts),
                   "side_acc_real": side_accuracy(probe, real["image"], prompts),
                   "prompts": prompts[:8], "n_prompts": len(prompts)})
    return report
