"""The camera looks a dataset frame is finished with after PyBullet's TinyRenderer has drawn it.

TinyRenderer draws flat, noiseless, perfectly exposed pinhole images. A real camera does not, and the differences
are what a model trained on renders stumbles over. Two looks stand in for a physical camera, so sim-to-real can be
shown, tested and benchmarked without photographs; both keep the frame's 3-D scene and labels (same seed -> same
scene as ``--style sim``) and project the labels through the same lens.

``real`` (:func:`real_camera`, the first stand-in, kept as it was): barrel distortion, vignetting, a lamp's light
falloff, a warm colour cast, blur, sensor noise and JPEG compression, on top of the scene's textured table and floor
and shadows.

``photo`` (:func:`photo_camera`, the sim-to-real benchmark's look): each effect follows the stage of a camera's
image pipeline that causes it, and is strong enough that a model trained on renders is clearly worse on it than one
trained on such frames (``armlab bench sim2real`` measures the gap):

* **the scene** (set in `Scene`): a tungsten lamp instead of the renderer's white light (warm light, from the side,
  harder shading: less ambient, more diffuse and specular light), shadows, and table and floor materials
  (procedural wood, noise, checker and stripe textures) that the plain render does not draw;
* **the lens**: barrel distortion (``dist_coeffs``, the labels' pixels follow it), defocus blur (Gaussian,
  0.35-0.6 px at 64 px), vignetting (cos^4-like radial falloff) and the lamp's light falloff;
* **the sensor**, in linear light: exposure (per frame, +0.2 to +0.8 stops: auto-exposure brightening a dim
  scene), the sensor's colour response with cross-talk between channels (a 3x3 matrix whose off-diagonal terms
  mix neighbouring channels), an uncorrected white balance for the tungsten lamp (per-channel gains, jittered per
  frame), and noise that grows with the signal (shot noise) plus a floor (read noise), per channel;
* **the processing**: a tone curve (gamma 2.2 and a filmic S-curve with lifted blacks and rolled-off highlights)
  and JPEG compression at quality 55-80 (8x8 blocks, chroma subsampling).

Every draw comes from the frame's own generator (``default_rng([seed, index, 1])``), so a frame's look is a pure
function of ``(seed, index, settings)``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["PHOTO_LIGHT", "distortion_maps", "photo_camera", "real_camera"]

#: The ``photo`` scene's lamp: direction (towards the light), colour and the renderer's light coefficients.
PHOTO_LIGHT = {"lightDirection": [-0.55, 0.45, 0.75], "lightColor": [1.0, 0.86, 0.66],
               "lightAmbientCoeff": 0.38, "lightDiffuseCoeff": 0.72, "lightSpecularCoeff": 0.22}

#: The ``photo`` sensor's colour response (rows: output R, G, B): cross-talk between neighbouring channels.
PHOTO_CCM = np.array([[0.80, 0.28, -0.08],
                      [0.12, 0.78, 0.10],
                      [-0.04, 0.30, 0.74]], dtype=np.float32)
#: Uncorrected white balance under the tungsten lamp: red amplified, blue attenuated.
PHOTO_WB = np.array([1.22, 1.0, 0.72], dtype=np.float32)


def distortion_maps(K: np.ndarray, dist_coeffs, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps that apply the lens ``dist_coeffs`` to an ideal pinhole image with intrinsics ``K``:
    for every pixel of the distorted output, where it comes from in the render."""
    uu, vv = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.stack([uu.ravel(), vv.ravel()], 1).reshape(-1, 1, 2)
    und = cv2.undistortPoints(pts, K, np.array(dist_coeffs, dtype=np.float64), P=K).reshape(height, width, 2)
    return und[..., 0].astype(np.float32), und[..., 1].astype(np.float32)


def _warp(rgb, depth_mm, inst, maps):
    mx, my = maps
    rgb = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    depth_mm = cv2.remap(depth_mm, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inst = cv2.remap(inst, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return rgb, depth_mm, inst


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def real_camera(rgb, depth_mm, inst, rng: np.random.Generator, maps, jpeg_quality: tuple[int, int]):
    """The ``real`` look: ``(rgb, depth_mm, inst)`` of a render -> the same through the stand-in camera."""
    H, W = inst.shape
    rgb, depth_mm, inst = _warp(rgb, depth_mm, inst, maps)
    img = rgb.astype(np.float32) / 255.0
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx - (W - 1) / 2) ** 2 + (yy - (H - 1) / 2) ** 2) / (0.5 * (W**2 + H**2) / 2)
    vignette = 1.0 - rng.uniform(0.25, 0.4) * r2
    cx, cy = rng.uniform(0.2, 0.8) * W, rng.uniform(0.0, 0.5) * H  # a lamp: light falloff
    falloff = 1.0 - rng.uniform(0.1, 0.25) * np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / max(W, H)
    cast = np.array([1.16, 1.06, 0.92]) * rng.uniform(0.95, 1.05, 3)  # warm sensor, auto-exposure gain
    img = img * (vignette * falloff)[..., None] * cast[None, None, :].astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9) * W / 128)
    img = img + rng.normal(0, rng.uniform(0.01, 0.025), img.shape).astype(np.float32)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
    return _jpeg(out, quality), depth_mm, inst


def _tone(lin: np.ndarray, contrast: float, black: float) -> np.ndarray:
    """Linear light -> display values: gamma 2.2, a filmic S-curve of strength ``contrast`` (tanh around
    mid-grey, renormalised to keep 0 and 1), blacks lifted to ``black``."""
    y = np.power(np.clip(lin, 0.0, None), 1 / 2.2)
    y = np.minimum(y, 1.0)
    s = 0.5 + 0.5 * np.tanh(contrast * (y - 0.5)) / np.tanh(0.5 * contrast)
    return black + (1.0 - black) * s


def photo_camera(rgb, depth_mm, inst, rng: np.random.Generator, maps, jpeg_quality: tuple[int, int] = (55, 80)):
    """The ``photo`` look (see the module docstring): ``(rgb, depth_mm, inst)`` of a render (drawn with
    `PHOTO_LIGHT`, textures and shadows) -> the frame as the camera would deliver it."""
    H, W = inst.shape
    rgb, depth_mm, inst = _warp(rgb, depth_mm, inst, maps)
    lin = np.power(rgb.astype(np.float32) / 255.0, 2.2)  # the render's display values -> linear light
    # the lens: defocus, vignetting, the lamp's falloff
    lin = cv2.GaussianBlur(lin, (0, 0), rng.uniform(0.35, 0.6) * W / 64)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx - (W - 1) / 2) ** 2 + (yy - (H - 1) / 2) ** 2) / ((W / 2) ** 2 + (H / 2) ** 2)
    vignette = (1.0 + rng.uniform(0.3, 0.5) * r2) ** -2  # cos^4-like
    cx, cy = rng.uniform(0.0, 0.4) * W, rng.uniform(0.0, 0.4) * H  # the lamp is up and to the left
    falloff = 1.0 / (1.0 + rng.uniform(0.6, 1.0) * ((xx - cx) ** 2 + (yy - cy) ** 2) / (W * W + H * H))
    # the sensor: exposure, colour response with cross-talk, white balance left at daylight under a warm lamp
    exposure = 2.0 ** rng.uniform(0.2, 0.8)
    gains = PHOTO_WB * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    lin = (lin * (vignette * falloff * exposure)[..., None]) @ (PHOTO_CCM.T * gains[None, :])
    lin = np.clip(lin, 0.0, None)
    shot, read = rng.uniform(0.004, 0.008), rng.uniform(0.004, 0.008)
    lin = lin + np.sqrt(shot * lin + read**2) * rng.standard_normal(lin.shape).astype(np.float32)
    # the processing: tone curve, 8-bit, JPEG
    out = _tone(lin, contrast=rng.uniform(2.0, 3.0), black=rng.uniform(0.03, 0.07))
    out = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
    return _jpeg(out, quality), depth_mm, inst
