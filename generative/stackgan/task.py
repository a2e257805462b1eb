"""StackGAN's settings (:class:`StackGANConfig`) and its training task (:class:`StackGANTask`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generative.conditions import label_state
from generative.gan.model import LocalClassifier
from generative.networks import condition_maps
from generative.stackgan.models import CondAug, Stage1G, Stage2G, TextD
from generative.text import LayoutHead, TextEncoder, Vocabulary, grid_prompts
from generative.training import TrainTask
from robot_env.io.dataset_format import CLASSES
from robot_env.io.errors import ConfigError, ParamError

__all__ = ["StackGANConfig", "StackGANTask"]


@dataclass
class StackGANConfig:
    """What defines a StackGAN run (``config.json`` and the checkpoint). ``size``: stage II's side (64), stage I
    draws ``size // 2``; ``ch``: the narrowest width of every network; ``kl_weight``: the conditioning
    augmentation's KL term; ``mismatch_weight``: the weight of "real image, wrong caption" among the
    discriminator's fakes; ``text_config``: the vocabulary and encoder arguments (``generative.text``).
    ``aux_class``: weight of the local class loss (needs the layout; 0 = off; None = 1 with a layout, else 0):
    each stage has a :class:`~generative.gan.model.LocalClassifier` trained on the real images' crops of
    ``aux_crop`` image widths around their target, and its generator's loss adds ``aux_class`` x that classifier's
    cross-entropy on the generated crop at the layout's target against the layout's class, as in armlab's
    conditional GAN."""

    size: int = 64
    z_dim: int = 32
    c_dim: int = 32
    ch: int = 16
    lr: float = 2e-4
    kl_weight: float = 1.0
    mismatch_weight: float = 0.5
    layout: bool = True
    map_sigma: float = 0.04
    refine: bool = True
    aux_class: float | None = None
    aux_crop: float = 0.25
    classes: tuple[str, ...] = CLASSES
    text_config: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 16 or self.size & (self.size - 1):
            raise ParamError("size", f"{{name}} must be a power of two of at least 16 pixels, got {self.size!r}")
        self.size = int(self.size)
        for k in ("z_dim", "c_dim", "ch"):
            if int(getattr(self, k)) < 1:
                raise ParamError(k, f"{{name}} must be at least 1, got {getattr(self, k)!r}")
        if self.lr <= 0 or self.kl_weight < 0 or self.mismatch_weight < 0:
            raise ConfigError("lr must be > 0, kl_weight and mismatch_weight >= 0")
        if not 0 < float(self.map_sigma) <= 1:
            raise ParamError("map_sigma", f"{{name}} must be in (0, 1] image widths, got {self.map_sigma!r}")
        self.layout, self.refine = bool(self.layout), bool(self.refine)
        if self.aux_class is None:
            self.aux_class = float(self.layout)
        if not (math.isfinite(float(self.aux_class)) and self.aux_class >= 0):
            raise ParamError("aux_class", f"{{name}} must be a finite number >= 0, got {self.aux_class!r}")
        self.aux_class = float(self.aux_class)
        if self.aux_class > 0 and not self.layout:
            raise ParamError("aux_class", "the local class loss ({name} > 0) needs the layout (the target's place); "
                             "set it to 0 without a layout")
        if not 0 < float(self.aux_crop) <= 1:
            raise ParamError("aux_crop", f"{{name}} must be in (0, 1] image widths, got {self.aux_crop!r}")
        self.classes = tuple(str(c) for c in self.classes)
        if self.text_config is not None and not {"vocab", "encoder"} <= set(self.text_config):
            raise ConfigError("a StackGAN's text_config needs its vocab and encoder arguments")

    @property
    def stage1(self) -> int:
        return self.size // 2

    @property
    def map_ch(self) -> int:
        """Channels of the where-and-what maps (one per class; 0 without a layout)."""
        return len(self.classes) if self.layout else 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["classes"] = list(d["classes"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StackGANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        # a key that is missing: a run from before it existed
        older = {"layout": False, "refine": False, "aux_class": 0.0}
        return cls(**{**older, **{k: v for k, v in d.items() if k in names}})

    def model_dict(self) -> dict[str, Any]:
        """The settings a resumed run must share with its checkpoint."""
        d = self.to_dict()
        for k in ("data", "text_config"):
            d.pop(k)
        return d


def build_generators(cfg: StackGANConfig) -> tuple[TextEncoder, LayoutHead | None, Stage1G, Stage2G]:
    """The frozen text encoder, the frozen layout head (None without a layout) and both generators of ``cfg``
    (freshly initialised)."""
    text = TextEncoder(**cfg.text_config["encoder"]).eval().requires_grad_(False)
    layout = LayoutHead(text.dim, len(cfg.classes)).eval().requires_grad_(False) if cfg.layout else None
    g1 = Stage1G(text.dim, cfg.z_dim, cfg.c_dim, cfg.ch, cfg.stage1, cfg.map_ch)
    g2 = Stage2G(text.dim, cfg.c_dim, cfg.ch, cfg.size, cfg.stage1, cfg.map_ch, cfg.refine)
    return text, layout, g1, g2


def layout_maps(cfg: StackGANConfig, class_id: torch.Tensor | None, target: torch.Tensor | None):
    """The networks' ``maps`` argument: ``res -> (N, map_ch, res, res)`` where-and-what maps of ``(class_id,
    target)`` (None without a layout)."""
    if not cfg.layout or class_id is None or target is None:
        return None
    cache: dict[int, torch.Tensor] = {}

    def maps(res: int) -> torch.Tensor:
        if res not in cache:
            cache[res] = condition_maps(class_id, target, len(cfg.classes), res, cfg.size, cfg.map_sigma)
        return cache[res]

    return maps


def _bce(logit: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, 1.0 if real else 0.0))


class StackGANTask(TrainTask):
    """Both stages trained together, every step: stage I's discriminator and generator on ``size / 2`` px (the real
    images average-pooled), then stage II's on ``size`` px, its generator refining stage I's images of that step
    (detached: stage II learns to correct whatever stage I draws). Each stage's discriminator sees real images with
    their caption (real), generated ones (fake) and, weighted ``mismatch_weight``, real images with another frame's
    caption (fake: the image must fit the words); non-saturating logistic losses on the unconditional and the
    conditional logit; each generator adds ``kl_weight`` x its conditioning augmentation's KL. Adam (0.5, 0.999), an
    EMA of both generators (sampling uses it). The batch holds ``image``, ``tokens`` ``(N, K, L)`` (one of K
    phrasings drawn per image and step), ``class_id`` and ``target`` (kept in the checkpoint). With a layout, every
    network reads the where-and-what maps of the frame's own class and target while training (the layout head,
    fitted before, infers them from the caption when sampling), and the mismatched pairs get the other frame's
    maps with its caption."""

    def __init__(self, cfg: StackGANConfig, text_state: dict[str, torch.Tensor] | None = None, init_seed: int = 0,
                 class_ids: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                 layout_state: dict[str, torch.Tensor] | None = None):
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(init_seed))
            self.text, self.layout, self.G1, self.G2 = build_generators(cfg)
            self.D1 = TextD(self.text.dim, cfg.stage1, cfg.ch, cfg.c_dim, cfg.map_ch)
            self.D2 = TextD(self.text.dim, cfg.size, cfg.ch, cfg.c_dim, cfg.map_ch)
            aux = cfg.aux_class > 0
            self.A1 = LocalClassifier(len(cfg.classes), cfg.aux_crop) if aux else None
            self.A2 = LocalClassifier(len(cfg.classes), cfg.aux_crop) if aux else None
        if text_state is not None:
            self.text.load_state_dict(text_state)
        if layout_state is not None and self.layout is not None:
            self.layout.load_state_dict(layout_state)
        self.vocab = Vocabulary.from_json(cfg.text_config["vocab"])
        adam = {"lr": cfg.lr, "betas": (0.5, 0.999)}
        self.opts = {k: torch.optim.Adam(getattr(self, k).parameters(), **adam) for k in ("G1", "D1", "G2", "D2")}
        for k in ("A1", "A2"):
            if getattr(self, k) is not None:
                self.opts[k] = torch.optim.Adam(getattr(self, k).parameters(), lr=1e-3)
        self.class_ids = class_ids
        self.targets = targets

    def modules(self) -> dict[str, nn.Module]:
        extra = {"layout": self.layout} if self.layout is not None else {}
        aux = {"A1": self.A1, "A2": self.A2} if self.A1 is not None else {}
        return {"text": self.text, **extra, "G1": self.G1, "D1": self.D1, "G2": self.G2, "D2": self.D2, **aux}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opts

    def ema_modules(self) -> list[str]:
        return ["G1", "G2"]

    def ddp_modules(self) -> list[str]:
        return ["G1", "D1", "G2", "D2", *(["A1", "A2"] if self.A1 is not None else [])]

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def extra_state(self) -> dict[str, Any]:
        return label_state(class_ids=self.class_ids, targets=self.targets)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings ``(N, dim)`` of ``(N, L)`` token ids (the frozen encoder)."""
        with torch.no_grad():
            return self.text(tokens.to(self.device))[2]

    def _stage(self, g: str, d: str, real: torch.Tensor, fake: torch.Tensor, e: torch.Tensor,
               mu: torch.Tensor, logvar: torch.Tensor, maps=None, wrong_maps=None, y: torch.Tensor | None = None,
               c: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        D, opt_d, opt_g = self.net(d), self.opts[d], self.opts[g]
        a = "A" + g[-1]  # this stage's local classifier
        wrong = e.roll(1, 0)  # another frame's caption
        ru, rc = D(real, e, maps)
        fu, fc = D(fake.detach(), e, maps)
        _, wc = D(real, wrong, wrong_maps)
        w = self.cfg.mismatch_weight
        loss_d = _bce(ru, True) + _bce(fu, False) + _bce(rc, True) + (_bce(fc, False) + w * _bce(wc, False)) / (1 + w)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out = {f"{d}": loss_d.detach()}
        classifier = self.modules().get(a)
        if classifier is not None:  # the local classifier learns the real shapes at the real targets
            out[f"a{g[-1]}_loss"], out[f"a{g[-1]}_acc_real"] = classifier.learn(self.opts[a], real, c, y, self.net(a))
        gu, gc = self.modules()[d](fake, e, maps)
        kl = CondAug.kl(mu, logvar)
        loss_g = _bce(gu, True) + _bce(gc, True) + self.cfg.kl_weight * kl
        if classifier is not None:  # G's crop at the layout's target must read as the layout's class
            g_class = classifier.class_loss(fake, c, y)[0]
            loss_g = loss_g + self.cfg.aux_class * g_class
            out[f"g{g[-1]}_class"] = g_class.detach()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if classifier is not None:
            classifier.requires_grad_(True)
        return {**out, f"{g}": loss_g.detach(), f"kl{g[-1]}": kl.detach()}

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | torch.Tensor]:
        real2 = batch["image"]
        n, dev = real2.shape[0], real2.device
        tokens = batch["tokens"]
        if tokens.ndim == 3:
            tokens = tokens[torch.arange(n, device=dev), torch.randint(0, tokens.shape[1], (n,), device=dev)]
        e = self.embed(tokens)
        y, c = batch.get("class_id"), batch.get("target")
        maps = layout_maps(self.cfg, y, c)
        wrong_maps = layout_maps(self.cfg, y.roll(1, 0), c.roll(1, 0)) if maps is not None else None
        real1 = F.avg_pool2d(real2, 2)
        z = torch.randn(n, self.cfg.z_dim, device=dev)
        fake1, mu1, lv1 = self.net("G1")(z, e, maps=maps)
        out = self._stage("G1", "D1", real1, fake1, e, mu1, lv1, maps, wrong_maps, y, c)
        fake2, mu2, lv2 = self.net("G2")(fake1.detach(), e, maps=maps)
        out.update(self._stage("G2", "D2", real2, fake2, e, mu2, lv2, maps, wrong_maps, y, c))
        return out

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, gen: torch.Generator, g1: nn.Module | None = None,
                 g2: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(stage I images, stage II images)`` in ``[-1, 1]`` for ``(N, L)`` caption tokens; ``z`` and the
        conditioning augmentation's noise from ``gen`` (a CPU generator)."""
        g1 = g1 if g1 is not None else self.eval_net("G1")
        g2 = g2 if g2 is not None else self.eval_net("G2")
        return stack_generate(self.text, g1, g2, tokens, gen, self.cfg.z_dim, layout=self.layout, cfg=self.cfg)

    def sample(self, n: int) -> torch.Tensor:
        tok = self.vocab.encode(grid_prompts(n, self.cfg.classes))
        gen = torch.Generator().manual_seed(0)
        return self.generate(tok, gen)[1]


@torch.no_grad()
def stack_generate(text: nn.Module, g1: nn.Module, g2: nn.Module, tokens: torch.Tensor, gen: torch.Generator,
                   z_dim: int, batch_size: int = 64, layout: LayoutHead | None = None,
                   cfg: StackGANConfig | None = None, side_margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage I and stage II images (CPU floats in ``[-1, 1]``) of caption ``tokens``; the noise from ``gen``. The
    conditioning augmentation samples its Gaussian too (its noise drawn from ``gen`` through a forked RNG); with a
    ``layout`` head (and the run's ``cfg``), the class and target it draws from ``gen`` for each caption become the
    networks' maps, the target at least ``side_margin`` image widths from the side cuts (``LayoutHead.sample``)."""
    dev = next(g1.parameters()).device
    out1, out2 = [], []
    for i in range(0, len(tokens), int(batch_size)):
        tok = tokens[i: i + int(batch_size)].to(dev)
        z = torch.randn(len(tok), z_dim, generator=gen).to(dev)
        seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
        e = text(tok)[2]
        maps = layout_maps(cfg, *layout.sample(e, gen, side_margin)) if layout is not None and cfg is not None else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x1 = g1(z, e, maps=maps)[0]
            x2 = g2(x1, e, maps=maps)[0]
        out1.append(x1.float().cpu())
        out2.append(x2.float().cpu())
    return torch.cat(out1), torch.cat(out2)
