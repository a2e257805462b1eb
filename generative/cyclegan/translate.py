"""Translating with a trained CycleGAN run: images, whole datasets (labels kept) and videos."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from generative.cyclegan.cut import OneSided
from generative.cyclegan.model import DIRECTIONS, GENERATORS, CyclePair
from generative.data import IMAGE_EXTENSIONS, DataError, ImageFolderDataset, is_armlab_dataset
from generative.runs import pick_device
from generative.training import CHECKPOINT, load_checkpoint
from robot_env.io.atomic import atomic_path, atomic_write_bytes
from robot_env.io.dataset_format import MANIFEST, write_manifest
from robot_env.io.errors import ConfigError, ParamError, PathError
from robot_env.io.hashing import sha256_bytes, sha256_file
from robot_env.io.shards import LAYOUT_KEY, WDS
from robot_env.io.video import VideoWriter, video_format

__all__ = ["Generators", "load_generators", "translate_dataset", "translate_images", "translate_video"]


@dataclass
class Generators:
    """A trained run's generators (EMA weights where the run kept them), in eval mode, ready to translate."""

    sim2real: nn.Module
    real2sim: nn.Module | None
    size: int
    step: int
    run: str
    config: dict[str, Any] = field(default_factory=dict)

    def get(self, direction: str) -> nn.Module:
        if direction not in DIRECTIONS:
            raise ParamError("direction", f"{{name}} must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if direction == "real2sim" and self.real2sim is None:
            raise ParamError("direction", f"the run {self.run!r} is one-sided ({self.config.get('method', 'cut')}): "
                                          "it translates sim2real only; train a CycleGAN for real2sim")
        return self.sim2real if direction == "sim2real" else self.real2sim

    @property
    def device(self) -> torch.device:
        return next(self.sim2real.parameters()).device


def load_generators(run_dir: str | Path, device: str | torch.device = "cpu") -> Generators:
    """The generators of the CycleGAN or CUT run in ``run_dir`` (its ``checkpoint.pt``), EMA weights when present, of
    the kind its config records (``"resnet"`` for runs written before there was a choice, or ``"look"``). A one-sided
    (CUT) run has no ``real2sim`` generator: asking for that direction is a :class:`ParamError`."""
    run = Path(run_dir)
    path = run / CHECKPOINT
    if not path.is_file():
        raise DataError(f"{str(run)!r} is not a CycleGAN run: no {CHECKPOINT} in it")
    ckpt = load_checkpoint(path, map_location="cpu")
    cfg = ckpt.get("task_config") or {}
    model = cfg.get("model")
    if model not in ("cyclegan", "cut"):
        raise DataError(f"{str(run)!r} holds a {model or 'non-CycleGAN'} checkpoint, not a CycleGAN or CUT run")
    kind = cfg.get("generator", "resnet")
    if kind not in GENERATORS:
        raise DataError(f"{str(run)!r} holds a CycleGAN run with an unknown generator {kind!r}")
    args = (int(cfg["base"]), int(cfg["n_blocks"]), int(cfg.get("n_down", 2)))
    pair = CyclePair(*args, generator=kind) if model == "cyclegan" else OneSided(*args, generator=kind)
    state = ckpt["ema"].get("gens") or ckpt["modules"]["gens"]
    try:
        pair.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"checkpoint {path} does not fit its own config ({str(exc).splitlines()[0]})") from None
    pair.to(pick_device(device)).eval().requires_grad_(False)
    return Generators(pair.g, getattr(pair, "f", None), int(cfg["size"]), int(ckpt["step"]), str(run), cfg)


def _generators(run: str | Path | Generators, device: str | torch.device = "cpu") -> Generators:
    return run if isinstance(run, Generators) else load_generators(run, device)


def _resize_batch(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize NHWC uint8 images to ``size`` = (width, height) (area when shrinking, linear when enlarging)."""
    w, h = size
    if x.shape[1] == h and x.shape[2] == w:
        return x
    interp = cv2.INTER_AREA if w < x.shape[2] and h < x.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(img, (w, h), interpolation=interp) for img in x])


@contextlib.contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Torch's global RNG seeded with ``seed`` inside, and restored (CPU and ``device``) after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def translate_images(
    run_dir: str | Path | Generators,
    images_uint8: Any,
    direction: str = "sim2real",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Any:
    """Translate uint8 RGB images with a trained run (a run folder or :func:`load_generators`' result).

    ``images_uint8``: ``(N, H, W, 3)`` numpy array or ``(N, 3, H, W)`` tensor (or one image without ``N``). Images
    not of the model's size are resized to it and the translations resized back, so the output has the input's
    type, layout and shape. Deterministic: batch ``b`` is translated with torch's RNG seeded ``seed + b`` (the
    look generator's sensor noise), and the global RNG is left as it was.
    """
    gens = _generators(run_dir, device)
    gens.get(direction)  # a one-sided run refuses real2sim before anything is written
    net = gens.get(direction)
    is_tensor = isinstance(images_uint8, torch.Tensor)
    x = images_uint8.detach().cpu().numpy() if is_tensor else np.asarray(images_uint8)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4 or x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3) or (N, 3, H, W), got {x.dtype} {x.shape}")
    chw = is_tensor and x.shape[1] == 3 and x.shape[-1] != 3
    nhwc = x.transpose(0, 2, 3, 1) if chw else x
    if nhwc.shape[-1] != 3:
        raise ValueError(f"images must have 3 channels (RGB), got shape {x.shape}")
    n, h, w = nhwc.shape[:3]
    out = np.empty_like(nhwc)
    dev = gens.device
    batch_size = max(1, batch_size)
    for i in range(0, n, batch_size):
        chunk = _resize_batch(np.ascontiguousarray(nhwc[i : i + batch_size]), (gens.size, gens.size))
        t = torch.from_numpy(chunk).to(dev).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        with _seeded(dev, int(seed) + i // batch_size):
            y = net(t)
        y = ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out[i : i + len(y)] = _resize_batch(y, (w, h))
    if chw:
        out = out.transpose(0, 3, 1, 2)
    out = np.ascontiguousarray(out)
    if single:
        out = out[0]
    return torch.from_numpy(out) if is_tensor else out


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {str(path)!r} (missing or corrupt)")
    return np.ascontiguousarray(img[:, :, ::-1])


def _encode(img_rgb: np.ndarray, suffix: str) -> bytes:
    ext = suffix.lower() if suffix.lower() in IMAGE_EXTENSIONS else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img_rgb[:, :, ::-1]), params)
    if not ok:
        raise DataError(f"OpenCV could not encode a translated image as {ext}")
    return buf.tobytes()


def _translate_files(gens: Generators, direction: str, pairs: Sequence[tuple[Path, Path]], batch_size: int,
                     progress: bool) -> dict[Path, str]:
    """Translate each ``src`` image into ``dst`` (same size and format); returns dst -> sha256."""
    hashes: dict[Path, str] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs), desc=f"translating {direction}", unit="img")
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        imgs = [_read_rgb(src) for src, _ in chunk]
        small = np.stack([_resize_batch(im[None], (gens.size, gens.size))[0] for im in imgs])
        trans = translate_images(gens, small, direction, batch_size=batch_size, seed=i // batch_size)
        for (_src, dst), im, t in zip(chunk, imgs, trans):
            t = _resize_batch(t[None], (im.shape[1], im.shape[0]))[0]
            data = _encode(t, dst.suffix)
            atomic_write_bytes(dst, data)
            hashes[dst] = sha256_bytes(data)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return hashes


def translate_dataset(
    run_dir: str | Path | Generators,
    in_dir: str | Path,
    out_dir: str | Path,
    direction: str = "sim2real",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Translate every image of ``in_dir`` into ``out_dir`` with a trained run.

    An armlab dataset (``manifest.json``) keeps its structure: every ``rgb/`` file listed in the manifest is
    translated (at the model's size, then resized back to its own) and written under the same name; every other
    listed file (labels, depth, segmentation, ``instances.json``) is copied byte for byte. A new ``manifest.json``
    is written last, with the SHA-256 of every file, ``"style": "translated"`` and
    ``settings["translation"]`` recording the run, its step, the direction and the source. A plain image folder is
    translated image by image to the same relative names. Returns a summary (``out``, ``kind``, ``images``,
    ``copied``, ``seconds``).
    """
    if direction not in DIRECTIONS:
        raise ParamError("direction", f"{{name}} must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise DataError(f"the input folder {str(src)!r} does not exist")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ConfigError("the output folder must differ from the input folder")
    if dst.exists() and not dst.is_dir():
        raise PathError(f"the output {str(dst)!r} exists and is not a folder")
    if (dst / MANIFEST).is_file():
        try:
            old_style = json.loads((dst / MANIFEST).read_text()).get("style")
        except (OSError, ValueError, AttributeError):
            old_style = None
        if old_style != "translated":
            raise DataError(f"{str(dst)!r} holds an armlab dataset of style {old_style!r}; refusing to overwrite it "
                            "with translated images")
    gens = _generators(run_dir, device)
    gens.get(direction)  # a one-sided run refuses real2sim before anything is written
    t0 = time.perf_counter()
    if not is_armlab_dataset(src):
        folder = ImageFolderDataset(src)
        pairs = [(p, dst / p.relative_to(src)) for p in folder.paths]
        _translate_files(gens, direction, pairs, batch_size, progress)
        return {"out": str(dst), "kind": "folder", "images": len(pairs), "copied": 0,
                "seconds": time.perf_counter() - t0}

    manifest_path = src / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read manifest {str(manifest_path)!r}: {exc}") from None
    if isinstance(manifest, dict) and manifest.get(LAYOUT_KEY) == WDS:
        raise DataError(f"{str(src)!r} is a sharded (wds) dataset; translate its folder form: `armlab dataset convert "
                        f"--src {src} --out FOLDER --format files`, then translate FOLDER")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise DataError(f"manifest {str(manifest_path)!r} lists no files")
    rgb = sorted(rel for rel in files if rel.startswith("rgb/"))
    if not rgb:
        raise DataError(f"armlab dataset {str(src)!r} lists no rgb/ images in its manifest")
    for rel in files:
        if not (src / rel).is_file():
            raise DataError(f"armlab dataset {str(src)!r} is incomplete: {rel} is missing")
    new_files: dict[str, str] = {}
    copied = 0
    for rel in sorted(files):
        if rel.startswith("rgb/"):
            continue
        with atomic_path(dst / rel) as tmp:
            shutil.copyfile(src / rel, tmp)
        new_files[rel] = sha256_file(dst / rel)
        copied += 1
    hashes = _translate_files(gens, direction, [(src / rel, dst / rel) for rel in rgb], batch_size, progress)
    for rel in rgb:
        new_files[rel] = hashes[dst / rel]
    new_manifest = dict(manifest)
    new_manifest["style"] = "translated"
    new_manifest["files"] = {rel: new_files[rel] for rel in files}
    settings = dict(manifest.get("settings") or {})
    settings["translation"] = {
        "model": "cyclegan", "generator": gens.config.get("generator", "resnet"), "run": str(gens.run),
        "step": gens.step, "direction": direction,
        "model_size": gens.size, "task_weight": gens.config.get("task_weight"), "source": str(src),
        "source_style": manifest.get("style"), "source_manifest_sha256": sha256_file(manifest_path),
    }
    new_manifest["settings"] = settings
    write_manifest(dst, new_manifest)
    return {"out": str(dst), "kind": "armlab", "images": len(rgb), "copied": copied,
            "seconds": time.perf_counter() - t0}


def translate_video(
    run_dir: str | Path | Generators,
    in_video: str | Path,
    out_video: str | Path,
    direction: str = "sim2real",
    side_by_side: bool = False,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    fps: float | None = None,
) -> dict[str, Any]:
    """Translate a video frame by frame (read with OpenCV, each frame resized to the model's size and back).

    With ``side_by_side`` each output frame is the original and its translation next to each other (twice the
    width). Written with :class:`robot_env.io.video.VideoWriter` (``.webm``, ``.mp4`` or ``.gif``, chosen by the
    extension; a writer OpenCV cannot open is a clear error), at the input's frame rate unless ``fps`` is given.
    Returns ``out``, ``frames``, ``width``, ``height`` (of the output) and ``fps``.
    """
    if direction not in DIRECTIONS:
        raise ParamError("direction", f"{{name}} must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    in_video, out_video = Path(in_video), Path(out_video)
    video_format(out_video)
    if not in_video.is_file():
        raise DataError(f"the input video {str(in_video)!r} does not exist")
    gens = _generators(run_dir, device)
    gens.get(direction)  # a one-sided run refuses real2sim before anything is written
    cap = cv2.VideoCapture(str(in_video))
    if not cap.isOpened():
        raise DataError(f"OpenCV cannot open the video {str(in_video)!r}")
    rate = fps or cap.get(cv2.CAP_PROP_FPS)
    rate = float(rate) if rate and math.isfinite(rate) and rate > 0 else 24.0
    frames = 0
    size = None
    try:
        with VideoWriter(out_video, fps=rate) as writer:
            while True:
                chunk = []
                while len(chunk) < batch_size:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    chunk.append(np.ascontiguousarray(bgr[:, :, ::-1]))
                if not chunk:
                    break
                small = np.stack([_resize_batch(f[None], (gens.size, gens.size))[0] for f in chunk])
                trans = translate_images(gens, small, direction, batch_size=batch_size, seed=frames // batch_size)
                for orig, t in zip(chunk, trans):
                    t = _resize_batch(t[None], (orig.shape[1], orig.shape[0]))[0]
                    frame = np.concatenate([orig, t], axis=1) if side_by_side else t
                    writer.write(frame)
                    size = frame.shape[1], frame.shape[0]
                    frames += 1
            if frames == 0:
                raise DataError(f"no frames could be read from the video {str(in_video)!r}")
    finally:
        cap.release()
    return {"out": str(out_video), "frames": frames, "width": size[0], "height": size[1], "fps": rate}
