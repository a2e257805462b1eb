"""A trained generator's latent space, as the lecture shows it: interpolation videos, the truncation trick, style
mixing and the projection of an image into W.

* :func:`interpolation_video` - a WebM looping through ``keyframes`` random latents: slerp in z (every arch) or
  lerp in w (stylegan2), noise off, one condition for the whole video.
* :func:`truncation_grid` - one row per seed, one column per psi: stylegan2 moves w towards the mean w of the
  condition (``w_avg + psi (w - w_avg)``, the mean over 1,024 seeded z), the other archs scale z by psi.
* :func:`mixing_grid` (stylegan2) - the top row the column sources, the left column the row sources; cell (i, j)
  takes the coarse styles (the layers at 4 and 8 px) from row source i and the fine ones from column source j.
* :func:`project` (stylegan2) - optimise one w (noise off) so that G(w) reconstructs a given image: the mean squared
  error at full and half resolution (no LPIPS), Adam from the mean w; writes the target beside its reconstruction.

:func:`explore` writes them all into a folder; every file is written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from generative.gan.sample import _draw_conditions, _generator_from, _load_run, mean_w
from generative.runs import pick_device
from generative.training import CHECKPOINT, make_grid
from robot_env.io.atomic import atomic_write_bytes, atomic_write_text, make_dirs
from robot_env.io.errors import ConfigError, DataError, MissingPathError, ParamError
from robot_env.io.video import VideoWriter

__all__ = ["explore", "interpolation_video", "mixing_grid", "parse_psi", "project", "slerp", "truncation_grid"]

DEFAULT_PSI = (1.0, 0.7, 0.5, 0.0)


def parse_psi(text: str | None) -> tuple[float, ...]:
    """``"1,0.7,0.5"`` -> floats (finite, in [-2, 2]); a `ParamError` (``psi``) otherwise."""
    if text is None:
        return DEFAULT_PSI
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and -2 <= v <= 2 for v in values):
        raise ParamError("psi", f"{{name}} takes numbers in [-2, 2] like 1,0.7,0.5,0, got {text!r}")
    return values


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (the path a Gaussian latent keeps its norm on)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def _uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _write_png(path: Path, images: torch.Tensor, nrow: int) -> Path:
    import cv2

    grid = make_grid(images, nrow=nrow)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(grid[:, :, ::-1]))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    atomic_write_bytes(path, png.tobytes())
    return path


class _Model:
    """G of a run (EMA), its config and one condition (``y``, ``c`` of one row, drawn from the training labels)."""

    def __init__(self, run: str | Path, device: str, seed: int):
        dev = pick_device(device)
        self.cfg, ckpt = _load_run(run, dev)
        self.G = _generator_from(self.cfg, ckpt, Path(run) / CHECKPOINT, dev, ema=True)
        self.device, self.style = dev, self.cfg.arch == "stylegan2"
        gen = torch.Generator().manual_seed(int(seed))
        y, c = _draw_conditions(self.cfg, ckpt, 1, None, gen)
        self.y1, self.c1 = y, c
        self.gen = gen

    def cond(self, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        y = None if self.y1 is None else self.y1.expand(n).to(self.device)
        c = None if self.c1 is None else self.c1.expand(n, 2).to(self.device)
        return y, c

    def z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, generator=self.gen).to(self.device)

    @torch.no_grad()
    def from_z(self, z: torch.Tensor) -> torch.Tensor:
        y, c = self.cond(len(z))
        kw = {"noise": "const"} if self.style else {}
        return torch.cat([self.G(z[i : i + 64], *(t[i : i + 64] if t is not None else None for t in (y, c)), **kw)
                          for i in range(0, len(z), 64)])

    @torch.no_grad()
    def w(self, z: torch.Tensor) -> torch.Tensor:
        y, c = self.cond(len(z))
        return self.G.mapping(z, y, c)

    def synth(self, ws: torch.Tensor) -> torch.Tensor:
        y, c = self.cond(len(ws))
        return self.G.synthesis(ws, y, c, noise="const")

    def w_avg(self) -> torch.Tensor:
        return mean_w(self.G, self.y1, self.c1, 1, samples=1024)


def _need_style(m: _Model, what: str) -> None:
    if not m.style:
        raise ConfigError(f"{what} needs a stylegan2 run; this one is {m.cfg.arch} (train with --arch stylegan2)")


def _frames(m: _Model, n_frames: int, keyframes: int, space: str) -> list[np.ndarray]:
    keys = m.z(keyframes)
    keys = torch.cat([keys, keys[:1]])  # a loop
    if space == "w":
        keys = m.w(keys)
    out = []
    with torch.no_grad():
        for f in range(n_frames):
            pos = f * keyframes / n_frames
            k, t = int(pos), pos - int(pos)
            if space == "w":
                x = m.synth(torch.lerp(keys[k : k + 1], keys[k + 1 : k + 2], t))
            else:
                x = m.from_z(slerp(keys[k : k + 1], keys[k + 1 : k + 2], t))
            out.append(x)
    images = torch.cat(out)
    scale = max(1, 128 // images.shape[-1])
    return list(_uint8(F.interpolate(images, scale_factor=scale, mode="nearest") if scale > 1 else images))


def interpolation_video(m: _Model, path: Path, n_frames: int = 48, keyframes: int = 4, space: str = "z",
                        fps: float = 24.0) -> Path:
    """Write the interpolation video (see the module docstring) to ``path`` (.webm)."""
    frames = _frames(m, n_frames, keyframes, space)
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


def truncation_grid(m: _Model, path: Path, psi: tuple[float, ...], rows: int = 4) -> tuple[Path, torch.Tensor]:
    """Write the truncation grid (rows: seeds, columns: psi); returns its path and the images."""
    z = m.z(rows)
    with torch.no_grad():
        if m.style:
            w, avg = m.w(z), m.w_avg()
            cols = [m.synth(avg.lerp(w, p)) for p in psi]
        else:
            cols = [m.from_z(z * p) for p in psi]
    images = torch.stack(cols, 1).flatten(0, 1)  # row-major: seed, psi
    return _write_png(path, images, len(psi)), images


def mixing_grid(m: _Model, path: Path, n: int = 4, coarse_px: int = 8) -> tuple[Path, torch.Tensor]:
    """Write the style-mixing grid (see the module docstring); returns its path and the ``n x n`` mixed images
    (row-major: row source, column source)."""
    _need_style(m, "style mixing")
    G = m.G
    coarse = torch.tensor([r <= coarse_px for r in G.layer_resolutions()], device=m.device)
    with torch.no_grad():
        w_rows, w_cols = m.w(m.z(n)), m.w(m.z(n))
        rows, cols = m.synth(w_rows), m.synth(w_cols)
        a = w_rows[:, None, None, :].expand(n, n, G.num_ws, -1)
        b = w_cols[None, :, None, :].expand(n, n, G.num_ws, -1)
        ws = torch.where(coarse[None, None, :, None], a, b).reshape(n * n, G.num_ws, -1)
        mixed = m.synth(ws)
    blank = torch.full_like(rows[:1], -1.0)
    table = [blank, cols]
    for i in range(n):
        table += [rows[i : i + 1], mixed[i * n : (i + 1) * n]]
    return _write_png(path, torch.cat(table), n + 1), mixed


def _read_image(path: Path, size: int) -> torch.Tensor:
    import cv2

    if not path.is_file():
        raise MissingPathError(f"image {str(path)!r} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{str(path)!r} is not a readable image (PNG, JPEG, ...)")
    rgb = cv2.resize(bgr[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def project(m: _Model, image: Path, out_png: Path, steps: int = 200, lr: float = 0.05) -> dict[str, float]:
    """Optimise one w so that G reconstructs ``image`` (see the module docstring); writes the target beside its
    reconstruction to ``out_png`` and returns ``{"mse", "psnr_db", "steps"}`` (the error in [-1, 1] units)."""
    _need_style(m, "projection")
    target = _read_image(Path(image), m.cfg.size).to(m.device)
    w = m.w_avg().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    m.G.requires_grad_(False)
    for _ in range(int(steps)):
        x = m.synth(w)
        loss = F.mse_loss(x, target) + F.mse_loss(F.avg_pool2d(x, 2), F.avg_pool2d(target, 2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        recon = m.synth(w).clamp(-1, 1)
        mse = float(F.mse_loss(recon, target))
    _write_png(out_png, torch.cat([target, recon]), 2)
    return {"mse": mse, "psnr_db": 10 * math.log10(4.0 / max(mse, 1e-12)), "steps": int(steps)}


def explore(run: str | Path, out: str | Path, seed: int = 0, n_frames: int = 48, psi: tuple[float, ...] = DEFAULT_PSI,
            project_image: str | Path | None = None, project_steps: int = 200, device: str = "cpu") -> dict[str, Any]:
    """Write into ``out``: ``interp_z.webm`` (and ``interp_w.webm``, ``mixing.png`` for stylegan2),
    ``truncation.png``, with ``project_image`` ``projection.png``, and ``latent.json`` (what was written, the
    condition, the projection's error). Bad input (no run, a projection of another arch's run, a missing or
    unreadable image) fails before anything is written."""
    if int(n_frames) < 2:
        raise ParamError("n_frames", f"{{name}} must be at least 2, got {n_frames}")
    if int(project_steps) < 1:
        raise ParamError("project_steps", f"{{name}} must be at least 1, got {project_steps}")
    m = _Model(run, device, seed)
    if project_image is not None:
        _need_style(m, "projection (--project)")
        _read_image(Path(project_image), m.cfg.size)  # readable, before anything is written
    folder = make_dirs(out)
    files = {"interp_z": str(interpolation_video(m, folder / "interp_z.webm", int(n_frames)))}
    if m.style:
        files["interp_w"] = str(interpolation_video(m, folder / "interp_w.webm", int(n_frames), space="w"))
    files["truncation"] = str(truncation_grid(m, folder / "truncation.png", tuple(psi))[0])
    if m.style:
        files["mixing"] = str(mixing_grid(m, folder / "mixing.png")[0])
    report: dict[str, Any] = {"run": str(run), "arch": m.cfg.arch, "seed": int(seed), "n_frames": int(n_frames),
                              "psi": list(psi), "files": files,
                              "class_id": None if m.y1 is None else int(m.y1[0]),
                              "target": None if m.c1 is None else [float(v) for v in m.c1[0]]}
    if project_image is not None:
        report["projection"] = project(m, Path(project_image), folder / "projection.png", project_steps)
        files["projection"] = str(folder / "projection.png")
    atomic_write_text(folder / "latent.json", json.dumps(report, indent=2) + "\n")
    return report
