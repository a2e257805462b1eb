"""What shapes a dataset: `DatasetConfig` (recorded in the manifest), the scene's constants, shards."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from robot_env.io.dataset_format import STYLES, DatasetParamError

RANDOMIZE = ("colors", "textures", "light", "camera", "distractors", "background")
DEFAULT_RANDOMIZE = ("colors", "light", "camera", "distractors", "background")
POSE_SETTINGS = ("poses_from", "poses_model_sha256", "pose_episodes")
POSE_RATE = 24.0  #: poses recorded per simulated second along an open-loop signal
POSE_STREAM = 3  #: frame i's pick from the pose bank: default_rng([seed, i, POSE_STREAM])

TABLE_TOP = 0.30  #: z of the table surface (m); arm3's shoulder is at 0.6 m
TABLE_CENTER = (0.30, 0.0)
TABLE_HALF = (0.45, 0.55)

# target colour (always reddish) and the distractor palette (never red)
TARGET_RGB = (0.85, 0.12, 0.10)
PALETTE = (
    (0.10, 0.35, 0.85), (0.10, 0.70, 0.25), (0.95, 0.80, 0.10), (0.60, 0.20, 0.75),
    (0.10, 0.75, 0.80), (0.95, 0.95, 0.95), (0.20, 0.20, 0.20), (0.95, 0.55, 0.10),
)


@dataclass
class DatasetConfig:
    """Everything that shapes the frames (recorded in the manifest)."""

    n: int = 1000
    size: int = 128
    seed: int = 0
    style: str = "sim"
    robot: str = "arm3"
    randomize: tuple[str, ...] = DEFAULT_RANDOMIZE
    max_distractors: int = 3
    object_size: float = 0.10  #: edge / diameter of the objects (m)
    fov: float = 45.0  #: vertical field of view (degrees)
    camera_distance: float = 1.05
    camera_elevation: float = 45.0
    jpeg_quality: tuple[int, int] = (70, 90)
    dist_coeffs: tuple[float, ...] = (-0.18, 0.05, 0.0, 0.0, 0.0)  #: the real style's lens (OpenCV k1 k2 p1 p2 k3)
    #: a `armlab train` run folder: arm poses come from its policy's rollouts (see `controllers.poses`)
    poses_from: str | None = None
    #: SHA-256 of the run's model file (filled in by `controllers.poses.resolve_poses`)
    poses_model_sha256: str | None = None
    pose_episodes: int = 64  #: rollouts of the policy that fill the pose bank

    @classmethod
    def from_settings(cls, settings: dict) -> DatasetConfig:
        """The config a manifest's ``settings`` record (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})

    def validate(self) -> DatasetConfig:
        """Check every field (`DatasetParamError` naming the field) and normalize types; returns ``self``."""
        for name in ("n", "size", "seed", "max_distractors", "pose_episodes"):  # whole numbers, or say which is not
            value = getattr(self, name)
            try:
                whole = not isinstance(value, bool) and int(value) == float(value)
            except (TypeError, ValueError, OverflowError):
                whole = False
            if not whole:
                raise DatasetParamError(name, f"{{name}} must be a whole number, got {value!r}.")
        if not isinstance(self.randomize, (tuple, list)) or not all(isinstance(r, str) for r in self.randomize):
            raise DatasetParamError("randomize", f"{{name}} must be randomization names, got {self.randomize!r}.")
        if int(self.n) < 1:
            raise DatasetParamError("n", f"{{name}} must be at least 1, got {self.n}.")
        if not 16 <= int(self.size) <= 1024:
            raise DatasetParamError("size", f"{{name}} must be between 16 and 1024 pixels, got {self.size}.")
        if self.style not in STYLES:
            raise DatasetParamError("style", f"unknown {{name}} {self.style!r}; choose one of {', '.join(STYLES)}.")
        bad = [r for r in self.randomize if r not in RANDOMIZE]
        if bad:
            raise DatasetParamError(
                "randomize",
                f"{{name}} has an unknown randomization {bad[0]!r}; choose from {', '.join(RANDOMIZE)}, "
                f"'all' or 'none'.",
            )
        if self.robot != "arm3":
            raise DatasetParamError("robot", f"the dataset scene is built for arm3, got {{name}} {self.robot!r}.")
        if not 0 <= int(self.max_distractors) <= 6:
            raise DatasetParamError("max_distractors",
                                    f"{{name}} must be between 0 and 6, got {self.max_distractors}.")
        if self.poses_from is not None and not 1 <= int(self.pose_episodes) <= 100_000:
            raise DatasetParamError("pose_episodes",
                                    f"{{name}} must be between 1 and 100000, got {self.pose_episodes}.")
        self.n, self.size, self.seed = int(self.n), int(self.size), int(self.seed)
        self.pose_episodes = int(self.pose_episodes)
        self.randomize = tuple(r for r in RANDOMIZE if r in self.randomize)
        return self

    def settings(self) -> dict:
        """The manifest's ``settings``: every field, JSON-ready (pose fields only with ``poses_from``)."""
        d = asdict(self)
        d["randomize"] = list(self.randomize)
        d["jpeg_quality"] = list(self.jpeg_quality)
        d["dist_coeffs"] = list(self.dist_coeffs)
        if self.poses_from is None:  # the random-configuration datasets keep their settings (and bytes)
            for key in POSE_SETTINGS:
                d.pop(key)
        return d


def parse_randomize(text: str) -> tuple[str, ...]:
    """``"colors,light"`` / ``"all"`` / ``"none"`` -> a tuple of randomization names."""
    text = text.strip()
    if text == "all":
        return RANDOMIZE
    if text in ("none", ""):
        return ()
    return tuple(t.strip() for t in text.split(",") if t.strip())


def shard_range(n: int, shard: tuple[int, int] | None) -> range:
    """The frame indices of shard ``i`` of ``N``: contiguous, disjoint, covering ``range(n)``."""
    if shard is None:
        return range(n)
    i, N = shard
    if not (N >= 1 and 0 <= i < N):
        raise DatasetParamError("shard", f"{{name}} must be i/N with 0 <= i < N, got {i}/{N}.")
    return range(i * n // N, (i + 1) * n // N)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> ``(i, N)`` (checked by `shard_range`); ``None`` or ``""`` -> ``None``."""
    if not text:
        return None
    try:
        i, N = (int(t) for t in text.split("/"))
    except ValueError:
        raise DatasetParamError("shard", f"{{name}} must look like i/N (for example 0/4), got {text!r}.") from None
    shard_range(1, (i, N))  # validates
    return i, N
