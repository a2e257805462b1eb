"""Captions of armlab frames, made from their labels, and the conditions a prompt names.

A frame's label (``docs/dataset-format.md``) says which object is the target (``class_name``), its colour (the
target object's ``color`` in ``objects``), where it is in the image (``target.pixel_norm``: ``u`` left to right,
``v`` top to bottom, so a larger ``v`` is nearer the camera), which distractors stand beside it (their shape and
colour) and, when a label has one, the table's texture (``table_texture`` / ``table.texture``). :func:`captions`
turns that into several phrasings of one sentence, drawn from templates and word choices with a seeded generator:
the same label, seed and index give the same captions.

Words for places (:data:`SIDES` from ``u``, :data:`DEPTHS` from ``v``) use fixed cut points (:data:`SIDE_CUTS`,
:data:`DEPTH_CUTS`), so :func:`side_of` and :func:`caption_conditions` read back what a caption says: the class and
the side (left / centre / right) of a prompt, for evaluating the text models with the probe.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from robot_env.io.dataset_format import CLASSES

__all__ = ["DEPTHS", "DEPTH_CUTS", "SIDES", "SIDE_CUTS", "caption_conditions", "captions", "colour_name",
           "depth_of", "grid_prompts", "prompt_layouts", "prompt_of", "side_of"]

SIDES = ("left", "centre", "right")
#: ``u`` below the first cut is left, above the second right, else centre.
SIDE_CUTS = (1 / 3, 2 / 3)
DEPTHS = ("far", "middle", "near")
#: ``v`` below the first cut is far (high in the image), above the second near; in between nothing is said.
DEPTH_CUTS = (0.42, 0.5)
_SIDE_WORDS = {"left": ("on the left of", "at the left of", "to the left on"),
               "centre": ("in the centre of", "in the middle of", "at the centre of"),
               "right": ("on the right of", "at the right of", "to the right on")}
_DEPTH_WORDS = {"far": ("far from the camera", "at the back", "in the distance"),
                "near": ("near the camera", "at the front", "close to the camera")}
_NUMBERS = ("no", "one", "two", "three", "four", "five")
_SYNONYMS = {"cube": ("cube", "box", "block"), "cylinder": ("cylinder", "can", "tube"),
             "sphere": ("sphere", "ball", "orb")}
_PLURAL = {"cube": "cubes", "cylinder": "cylinders", "sphere": "spheres"}
_TEMPLATES = (
    "a {colour} {shape} {side} the table{depth}{others}",
    "the {shape} is {colour} and stands {side} the table{depth}{others}",
    "{side_cap} the table{depth} there is a {colour} {shape}{others}",
    "a robot arm and a {colour} {shape} {side} the table{depth}{others}",
)


def colour_name(rgb: Sequence[float] | None) -> str | None:
    """A colour word for an RGB triple in ``[0, 1]`` (None for None): white, grey, black, or a hue (red, orange,
    yellow, green, cyan, blue, purple, pink)."""
    if rgb is None:
        return None
    r, g, b = (float(np.clip(c, 0.0, 1.0)) for c in list(rgb)[:3])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    if v < 0.3:
        return "black"
    if s < 0.3:
        return "white" if v > 0.75 else "grey"
    deg = h * 360
    for limit, name in ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"), (260, "blue"),
                        (300, "purple"), (340, "pink")):
        if deg < limit:
            return name
    return "red"


def side_of(u: float) -> str:
    """``left`` / ``centre`` / ``right`` for a horizontal position ``u`` in ``[0, 1]``."""
    return SIDES[int(u >= SIDE_CUTS[0]) + int(u >= SIDE_CUTS[1])]


def depth_of(v: float) -> str:
    """``far`` / ``middle`` / ``near`` for a vertical position ``v`` in ``[0, 1]`` (lower in the image: nearer)."""
    return DEPTHS[int(v >= DEPTH_CUTS[0]) + int(v >= DEPTH_CUTS[1])]


def _facts(label: dict[str, Any]) -> dict[str, Any]:
    """What a caption can say about a frame: shape, colour, side, depth, distractors, table texture."""
    objects = [o for o in label.get("objects") or [] if isinstance(o, dict)]
    target = next((o for o in objects if o.get("is_target")), None)
    shape = str(label.get("class_name") or (target or {}).get("category") or "object")
    pn = (label.get("target") or {}).get("pixel_norm") or [float("nan")] * 2
    u, v = float(pn[0]), float(pn[1])
    others = [(str(o.get("category")), colour_name(o.get("color"))) for o in objects
              if not o.get("is_target") and o.get("category") in _PLURAL]
    table = label.get("table_texture") or (label.get("table") or {}).get("texture")
    return {"shape": shape, "colour": colour_name((target or {}).get("color")) or "", "u": u, "v": v,
            "side": side_of(u) if np.isfinite(u) else None, "depth": depth_of(v) if np.isfinite(v) else None,
            "others": others, "table": str(table) if table else None}


def _others_phrase(others: list[tuple[str, str | None]], rng: np.random.Generator) -> str:
    if not others:
        return "" if rng.random() < 0.5 else rng.choice([" and nothing else", " alone"])
    counts: dict[str, int] = {}
    for shape, _ in others:
        counts[shape] = counts.get(shape, 0) + 1
    parts = []
    for shape, k in sorted(counts.items()):
        if k == 1:
            colour = next(c for s, c in others if s == shape)
            parts.append(f"a {colour + ' ' if colour and rng.random() < 0.5 else ''}{shape}")
        else:
            parts.append(f"{_NUMBERS[min(k, 5)]} {_PLURAL[shape]}")
    lead = rng.choice([" next to ", " beside ", " with "])
    return lead + " and ".join(parts)


def captions(label: dict[str, Any], n: int = 4, seed: int = 0, index: int = 0) -> list[str]:
    """``n`` phrasings of one frame's caption (lower case, no punctuation), drawn with the seed ``(seed,
    index)``: the same label, seed and index always give the same list. Each names the target's colour (when the
    label has one) and shape (the class name or, in some phrasings, a synonym: box, ball, ...), its side and,
    when it is clearly near or far, its depth, the distractors and the table texture when the label has it."""
    f = _facts(label)
    rng = np.random.default_rng([int(seed), int(index), 7])
    out = []
    for k in range(int(n)):
        shape = f["shape"]
        if k > 0 and shape in _SYNONYMS and rng.random() < 0.3:
            shape = str(rng.choice(_SYNONYMS[shape][1:]))
        side = _SIDE_WORDS[f["side"]][int(rng.integers(3))] if f["side"] else "on"
        depth = f" {rng.choice(_DEPTH_WORDS[f['depth']])}" if f["depth"] in _DEPTH_WORDS else ""
        others = _others_phrase(f["others"], rng)
        if f["table"]:
            others += f" on a {f['table']} table"
        text = _TEMPLATES[(k + int(index)) % len(_TEMPLATES)].format(
            colour=f["colour"] or "", shape=shape, side=side, side_cap=side, depth=depth, others=others)
        out.append(" ".join(text.split()))
    return out


_WORDS = re.compile(r"[a-z]+")


def caption_conditions(text: str, classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """The class id and side a prompt names: ``{"class_id": int | None, "side": "left" | "centre" | "right" |
    None}`` (the first shape word, synonyms included, and the first side word; "center" and "middle" are
    centre). Words about distractors come after ``next to`` / ``beside`` / ``with`` and are not read."""
    words = _WORDS.findall(str(text).lower())
    for stop in ("next", "beside", "with"):
        if stop in words:
            words = words[: words.index(stop)]
    lower = [c.lower() for c in classes]
    class_id = None
    for w in words:
        for name, syn in _SYNONYMS.items():
            if (w in syn or w == _PLURAL[name]) and name in lower:
                class_id = lower.index(name)
                break
        if w in lower:
            class_id = lower.index(w)
        if class_id is not None:
            break
    side = None
    for w in words:
        if w in ("left", "right"):
            side = w
            break
        if w in ("centre", "center", "middle"):
            side = "centre"
            break
    return {"class_id": class_id, "side": side}


def prompt_of(class_name: str, u: float, colour: str = "red") -> str:
    """The plain prompt of a class at horizontal position ``u``: ``"a red cube on the left of the table"``."""
    side = side_of(float(u))
    return f"a {colour} {class_name} {_SIDE_WORDS[side][0]} the table"


def grid_prompts(n: int, classes: Sequence[str]) -> list[str]:
    """The prompts of a sample grid: one class per row, the side moving left -> centre -> right across the
    columns (the columns of a ``ceil(sqrt(n))`` wide grid spread over the three sides)."""
    ncol = max(1, int(np.ceil(np.sqrt(n))))
    out = []
    for i in range(int(n)):
        row, col = divmod(i, ncol)
        u = (col + 0.5) / ncol
        out.append(prompt_of(classes[row % len(classes)], u))
    return out


def prompt_layouts(prompt: str, class_ids: Sequence[int], targets: Sequence[Sequence[float]], n: int, seed: int = 0,
                   classes: Sequence[str] = CLASSES) -> dict[str, np.ndarray]:
    """What a class- and position-conditioned model (no text encoder) can take from a prompt: ``{"class_id": (n,),
    "target": (n, 2)}``, ``n`` (class, target position) pairs drawn with replacement (seeded) from labelled frames
    (``class_ids`` and ``targets`` ``(u, v)``, one per frame) of the class the prompt names (`caption_conditions`)
    whose target is on the side it names. A prompt that names no class (or no side) leaves that free; a side with
    no frame of the class falls back to the class's frames. ValueError when nothing matches at all."""
    want = caption_conditions(prompt, classes)
    ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    pos = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    if len(ids) != len(pos) or not len(ids):
        raise ValueError(f"prompt_layouts needs one target per class id, got {len(ids)} ids and {len(pos)} targets")
    pick = np.ones(len(ids), bool) if want["class_id"] is None else ids == want["class_id"]
    if want["side"] is not None:
        on_side = pick & (np.array([side_of(u) for u in pos[:, 0]]) == want["side"])
        pick = on_side if on_side.any() else pick
    if not pick.any():
        raise ValueError(f"no labelled frame shows a {classes[want['class_id']]} to draw a layout for {prompt!r}")
    rows = np.random.default_rng(int(seed)).choice(np.flatnonzero(pick), size=int(n), replace=True)
    return {"class_id": ids[rows], "target": pos[rows]}
