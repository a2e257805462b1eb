"""The conditions of the generative models, read and checked in one place.

A model is conditioned on a subset of ``class`` (the target object's shape, ``class_id``), ``target`` (where the
target's centre is in the image, ``pixel_norm`` in ``[0, 1]^2``) and, for diffusion, ``joints`` (the arm's joint
positions in radians). :func:`parse_cond` reads the subset; :func:`as_class_ids`, :func:`as_targets` and
:func:`as_joints` turn requested values into tensors (one sentence for a bad value); :func:`grid_conditions` gives
the sample grids' fixed conditions (one class per row, the target sweeping left to right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_env.io.errors import ConfigError, ParamError

__all__ = ["as_class_ids", "as_joints", "as_targets", "grid_conditions", "label_state", "parse_cond", "parse_names",
           "requested_conditions"]


def parse_names(value: str | Sequence[str] | None, allowed: Sequence[str], empty: Sequence[str]) -> list[str]:
    """``"a,b"`` / ``["b", "a"]`` -> lower-case names, blanks dropped; ``[]`` for None or one of ``empty``
    (``"none"``, ...). Names outside ``allowed`` are left for the caller to refuse."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(c).strip().lower() for c in items if str(c).strip()]
    return [] if len(items) == 1 and items[0] in empty else items


def parse_cond(cond: str | Sequence[str] | None, allowed: Sequence[str], takes: str) -> tuple[str, ...]:
    """``"class,target"`` / ``["target"]`` / ``""`` / ``"none"`` / None -> the conditions in ``allowed``'s order.

    A `ParamError` (``cond``) for a name outside ``allowed``; ``takes`` says what the parameter takes."""
    items = parse_names(cond, allowed, ("none", "uncond", "unconditional"))
    bad = [c for c in items if c not in allowed]
    if bad:
        raise ParamError("cond", f"unknown condition {bad[0]!r}: {{name}} takes {takes}")
    return tuple(c for c in allowed if c in items)


def as_class_ids(value: Any, classes: Sequence[str], n: int) -> torch.Tensor:
    """Requested classes (a name, an id, or one per image) -> long ``(n,)``."""
    if isinstance(value, (str, int, np.integer)):
        value = [value]
    ids = []
    lower = [c.lower() for c in classes]
    for v in list(value):
        if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
            if v.strip().lower() not in lower:
                raise ConfigError(f"unknown class {v!r}: this model knows {', '.join(classes)}")
            ids.append(lower.index(v.strip().lower()))
        else:
            i = int(v)
            if not 0 <= i < len(classes):
                raise ConfigError(f"class id {i} is outside 0..{len(classes) - 1} ({', '.join(classes)})")
            ids.append(i)
    t = torch.tensor(ids, dtype=torch.long)
    if len(t) == 1:
        t = t.expand(n).clone()
    if len(t) != n:
        raise ConfigError(f"{len(t)} class ids for {n} images")
    return t


def as_targets(value: Any, n: int, dtype: Any = np.float32) -> torch.Tensor:
    """Requested target positions (one ``(u, v)`` in ``[0, 1]`` or one per image) -> ``(n, 2)`` of ``dtype``."""
    t = torch.as_tensor(np.asarray(value, dtype=dtype)).reshape(-1, 2)
    if len(t) == 1:
        t = t.expand(n, 2).clone()
    if len(t) != n:
        raise ConfigError(f"{len(t)} targets for {n} images")
    if not (torch.isfinite(t).all() and (t >= 0).all() and (t <= 1).all()):
        raise ConfigError("target positions must be pixel_norm values in [0, 1], e.g. 0.4,0.6")
    return t


def as_joints(value: Any, n: int, n_joints: int, limits: Sequence[Sequence[float]] | None = None,
              example: str = "", robot: str | None = None) -> torch.Tensor:
    """Requested joint positions (radians: one row of ``n_joints`` numbers, or one row per image; a string
    ``"0.1,-0.3,1.0"`` works too) -> float64 ``(n, n_joints)``; a ValueError in one sentence for a wrong count,
    non-finite values or values outside ``limits`` (``[[lower, upper], ...]``, when known). ``example`` and
    ``robot`` go into the messages."""
    j = n_joints
    of = f" of {robot}" if robot else ""
    want = (f"the joint condition takes {j} joint positions in radians (one per joint{of}, comma-separated), "
            f"e.g. {example}")
    text = value if isinstance(value, str) else None
    try:
        if text is not None:
            value = [float(v) for v in text.split(",")]
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{want}; got {value!r}") from None
    if arr.ndim <= 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != j:
        got = repr(text) if text is not None else f"{arr.shape[-1]} values"
        raise ConfigError(f"{want}; got {got}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"joint positions must be finite numbers (radians), got {text or arr.tolist()}")
    for k, (lo, hi) in enumerate(limits or []):
        bad = arr[:, k][(arr[:, k] < lo - 1e-9) | (arr[:, k] > hi + 1e-9)]
        if len(bad):
            raise ConfigError(f"joint {k + 1} position {float(bad[0]):g} rad is outside its limits [{lo:g}, {hi:g}]"
                             f"{of}")
    q = torch.from_numpy(arr)
    if len(q) == 1:
        q = q.expand(n, j).clone()
    if len(q) != n:
        raise ConfigError(f"{len(q)} joint conditions for {n} images")
    return q


def grid_conditions(n: int, n_classes: int, use_target: bool, targets: torch.Tensor | None
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """A sample grid's class and target: one class per row (cycling through the ``n_classes``; None without
    classes), the target (None without ``use_target``) sweeping from the 10th to the 90th percentile of the
    training ``u`` (``targets``, ``(N, 2)``) across the columns, at the 30th / 70th percentile of ``v``
    (alternating per round of classes). Also returns each image's row and column."""
    ncol = max(1, math.ceil(math.sqrt(n)))
    i = torch.arange(n)
    row, col = i // ncol, i % ncol
    y = (row % n_classes) if n_classes else None
    c = None
    if use_target:
        t = targets[torch.isfinite(targets).all(1)] if targets is not None else None
        if t is None or len(t) == 0:
            t = torch.tensor([[0.2, 0.4], [0.8, 0.6]])
        u_lo, u_hi = torch.quantile(t[:, 0], 0.1).item(), torch.quantile(t[:, 0], 0.9).item()
        v_lo, v_hi = torch.quantile(t[:, 1], 0.3).item(), torch.quantile(t[:, 1], 0.7).item()
        u = u_lo + (u_hi - u_lo) * col.float() / max(ncol - 1, 1)
        rounds = row // max(n_classes, 1)
        v = torch.where(rounds % 2 == 0, torch.tensor(v_lo), torch.tensor(v_hi))
        c = torch.stack([u, v], 1)
    return y, c, row, col


def label_state(**labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The training labels a task keeps in its checkpoint (``class_ids=...``, ``targets=...``), those it has."""
    return {name: value for name, value in labels.items() if value is not None}


def requested_conditions(run: str | Path, run_cond: Sequence[str], cond: Sequence[str] | None = None,
                         class_id: str | int | None = None, target: str | Sequence[float] | None = None,
                         joints: str | Sequence[float] | None = None) -> dict[str, Any]:
    """The conditions a user asks a trained model (``run``, conditioned on ``run_cond``) to sample with, as the
    ``cond`` dict of the models' ``sample`` functions (``class_id``, ``target``, ``joints``; a condition left out
    is drawn from the training labels). ``cond``, when given, must be the run's own conditions; ``target`` is a
    pixel position ``"u,v"`` or ``(u, v)`` in ``[0, 1]``; ``joints`` is checked later, against the run's data.
    `ParamError` names the parameter that does not fit the run."""
    if cond is not None and tuple(cond) != tuple(run_cond):
        have = ",".join(run_cond) or "nothing (unconditional)"
        raise ConfigError(f"run {run} is conditioned on {have}, not on {','.join(cond) or 'nothing'}.")
    out: dict[str, Any] = {}
    if class_id is not None:
        if "class" not in run_cond:
            raise ParamError("class_id", f"run {run} is not conditioned on the class: leave {{name}} out.")
        out["class_id"] = class_id
    if target is not None:
        if "target" not in run_cond:
            raise ParamError("target", f"run {run} is not conditioned on the target: leave {{name}} out.")
        try:
            uv = [float(v) for v in (target.split(",") if isinstance(target, str) else target)]
        except (TypeError, ValueError):
            uv = []
        if len(uv) != 2 or not all(0.0 <= v <= 1.0 for v in uv):
            raise ParamError("target", f"{{name}} takes two numbers in [0, 1] like 0.4,0.6, got {target!r}.")
        out["target"] = uv
    if joints is not None:
        if "joints" not in run_cond:
            raise ParamError("joints", f"run {run} is not conditioned on the joints: leave {{name}} out.")
        out["joints"] = joints if isinstance(joints, str) else ",".join(str(q) for q in joints)
    return out
