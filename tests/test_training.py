"""generative.training: the shared training loop, with a tiny autoencoder and a tiny conditional GAN as tasks."""

import csv
import json
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import generative.training as training
from generative.networks import DCGANDiscriminator, DCGANGenerator
from generative.training import (
    EMA,
    TrainConfig,
    Trainer,
    TrainTask,
    is_main_process,
    make_grid,
    to_model_range,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_images(n: int = 48, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images (bilinearly upsampled 4x4 noise): easy to autoencode."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return (F.interpolate(low, size=size, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


class AutoencoderTask(TrainTask):
    """Denoising autoencoder: randomness (the noise) inside train_step, a scheduler, EMA and extra state."""

    def __init__(self, init_seed=0, width=16, lr=3e-3, noise=0.1, fail_at=None):
        torch.manual_seed(init_seed)
        self.ae = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Tanh(),
        )
        self.opt = torch.optim.Adam(self.ae.parameters(), lr=lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=5, gamma=0.9)
        self.noise, self.fail_at, self.width = noise, fail_at, width
        self.seen = 0
        self.last_noise = torch.zeros(())

    def modules(self):
        return {"ae": self.ae}

    def optimizers(self):
        return {"ae": self.opt}

    def schedulers(self):
        return {"ae": self.sched}

    def ema_modules(self):
        return ["ae"]

    def config(self):
        return {"width": self.width, "noise": self.noise}

    def extra_state(self):
        return {"seen": self.seen, "last_noise": self.last_noise}

    def load_extra_state(self, state):
        self.seen, self.last_noise = state["seen"], state["last_noise"]

    def train_step(self, batch, step):
        if step == self.fail_at:
            raise RuntimeError("simulated crash")
        x = batch["image"]
        noise = self.noise * torch.randn_like(x)
        with self.autocast():
            loss = F.mse_loss(self.net("ae")(x + noise), x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.seen += len(x)
        self.last_noise = noise.flatten()[0].clone()
        return {"loss": loss.detach()}

    def sample(self, n):
        return self.eval_net("ae")(to_model_range(toy_images(n, seed=1)).to(self.device))


class TinyConditionalGAN(TrainTask):
    """Hinge-loss projection cGAN on 16 px images, conditioned on a class id and a 2-d target position."""

    def __init__(self, init_seed=0):
        torch.manual_seed(init_seed)
        self.G = DCGANGenerator(z_dim=8, size=16, base=4, n_classes=3, cond_dim=2)
        self.D = DCGANDiscriminator(size=16, base=4, n_classes=3, cond_dim=2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), 2e-3, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), 2e-3, betas=(0.0, 0.99))
        self.batches = []

    def modules(self):
        return {"G": self.G, "D": self.D}

    def optimizers(self):
        return {"G": self.opt_g, "D": self.opt_d}

    def ema_modules(self):
        return ["G"]

    def train_step(self, batch, step):
        x, y, c = batch["image"], batch["class_id"], batch["target"]
        self.batches.append({k: (v.dtype, float(v.min()), float(v.max()), len(v)) for k, v in batch.items()})
        z = torch.randn(len(x), 8, device=self.device)
        with self.autocast():
            fake = self.net("G")(z, y, c)
            d_loss = F.relu(1 - self.net("D")(x, y, c)).mean() + F.relu(1 + self.net("D")(fake.detach(), y, c)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        with self.autocast():
            g_loss = -self.D(fake, y, c).mean()  # unwrapped D: no gradient sync for D in the generator step
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {"d": d_loss.detach(), "g": float(g_loss.detach())}

    def sample(self, n):
        g = torch.Generator().manual_seed(0)
        y, c, z = torch.arange(n) % 3, torch.rand(n, 2, generator=g), torch.randn(n, 8, generator=g)
        return self.eval_net("G")(z, y, c)


def gan_data(n=24):
    g = torch.Generator().manual_seed(3)
    return {"image": toy_images(n), "class_id": torch.randint(0, 3, (n,), generator=g),
            "target": torch.rand(n, 2, generator=g)}


def config(out, **kw):
    base = dict(out=out, steps=12, batch_size=8, seed=0, log_every=1, sample_every=1000, checkpoint_every=4,
                ema_decay=0.9, progress=False, tensorboard=False, n_samples=4)
    base.update(kw)
    return TrainConfig(**base)


def run(out, task=None, **kw):
    task = task or AutoencoderTask()
    summary = Trainer(task, {"image": toy_images()}, config(out, **kw)).fit()
    return task, summary


def snapshot(task, trainer_state=True):
    """Everything that must match between two runs: parameters, EMA, optimizer and scheduler state, extra state."""
    state = {f"ae.{k}": v.clone() for k, v in task.ae.state_dict().items()}
    if trainer_state:
        state.update({f"ema.{k}": v.clone() for k, v in task.trainer.ema["ae"].state_dict().items()})
        for i, s in task.opt.state_dict()["state"].items():
            state.update({f"opt.{i}.{k}": v.clone() for k, v in s.items()})
        state["lr"] = torch.tensor(task.opt.param_groups[0]["lr"])
        state["seen"] = torch.tensor(task.seen)
        state["last_noise"] = task.last_noise
    return state


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def read_log(out):
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------------------- helpers
def test_to_model_range_and_make_grid():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1)
    y = to_model_range(x)
    assert y.dtype == torch.float32 and y.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    with pytest.raises(ValueError):
        to_model_range(y)
    imgs = -torch.ones(5, 3, 4, 6)
    imgs[1, 0] = 1.0  # image 1 pure red
    grid = make_grid(imgs, nrow=3, padding=1)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3)
    assert grid[1:5, 8:14].tolist() == [[[255, 0, 0]] * 6] * 4  # second tile, RGB order
    assert grid[0].max() == 0 and grid[6:10, 15:21].max() == 0  # padding; the missing sixth tile stays empty
    gray = make_grid(torch.zeros(4, 1, 2, 2))
    assert gray.shape == (2 * 4 + 2, 2 * 4 + 2, 3) and gray[2, 2].tolist() == [128, 128, 128]


def test_batches_are_a_function_of_seed_and_step_and_cover_each_epoch():
    task = AutoencoderTask()
    t1 = Trainer(task, {"image": toy_images(20)}, config("unused", batch_size=8))
    t2 = Trainer(AutoencoderTask(), {"image": toy_images(20)}, config("unused", batch_size=8))
    assert torch.equal(t1.batch_indices(7), t2.batch_indices(7))
    epoch = torch.cat([t1.batch_indices(s) for s in range(5)])  # 40 samples = two epochs of 20
    assert sorted(epoch[:20].tolist()) == list(range(20)) and sorted(epoch[20:].tolist()) == list(range(20))
    assert not torch.equal(epoch[:20], epoch[20:])
    t3 = Trainer(AutoencoderTask(), {"image": toy_images(20)}, config("unused", batch_size=8, seed=1))
    assert not torch.equal(t1.batch_indices(0), t3.batch_indices(0))
    with pytest.raises(ValueError, match="same"):
        Trainer(AutoencoderTask(), {"image": toy_images(20), "y": torch.zeros(19)}, config("unused"))


def test_ema_update_and_state():
    m = nn.BatchNorm1d(3)
    ema = EMA(m)
    with torch.no_grad():
        m.weight.fill_(3.0)
        m.running_mean.fill_(5.0)
    ema.update(0.5)
    assert torch.equal(ema.module.weight, torch.full((3,), 2.0))  # halfway between 1 and 3
    assert torch.equal(ema.module.running_mean, m.running_mean)  # buffers copied
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    ema.update(0.0)
    assert torch.equal(ema.module.weight, m.weight)


# --------------------------------------------------------------------------------------------------------- training
def test_loss_falls_and_outputs_appear(tmp_path):
    out = tmp_path / "run"
    task, summary = run(out, steps=60, log_every=10, sample_every=20, tensorboard=True, progress=True)
    assert summary["steps"] == 60 and summary["steps_run"] == 60 and summary["start_step"] == 0
    assert summary["images_per_s"] > 0 and summary["wall_time_s"] > 0 and set(summary["losses"]) == {"loss"}
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == list(range(10, 61, 10))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.5 * losses[0], losses
    assert {"images_per_s", "lr/ae"} <= set(rows[0])
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_000020.png", "step_000040.png", "step_000060.png"]
    grid = cv2.imread(str(out / "samples" / "step_000060.png"))
    assert grid.shape == (2 * 18 + 2, 2 * 18 + 2, 3)
    assert list((out / "tb").glob("events.out.tfevents.*"))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["steps"] == 60 and cfg["task"] == {"width": 16, "noise": 0.1}
    assert cfg["task_class"].endswith("AutoencoderTask")
    # EMA: differs from the raw weights, but tracks them (much closer to them than the initial weights are)
    init = AutoencoderTask().ae.state_dict()
    raw, ema = task.ae.state_dict(), task.trainer.ema["ae"].module.state_dict()
    assert task.eval_net("ae") is task.trainer.ema["ae"].module and task.net("ae") is task.ae
    dist_ema = sum((raw[k] - ema[k]).norm() ** 2 for k in raw) ** 0.5
    dist_init = sum((raw[k] - init[k]).norm() ** 2 for k in raw) ** 0.5
    assert 0 < dist_ema < 0.5 * dist_init


def test_kill_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    straight, _ = run(tmp_path / "straight")
    expected = snapshot(straight)

    # stopped after 6 steps, then resumed to 12 by a fresh process (different initial weights, overwritten)
    run(tmp_path / "two_parts", steps=6)
    resumed, summary = run(tmp_path / "two_parts", task=AutoencoderTask(init_seed=5))
    assert (summary["start_step"], summary["steps_run"], summary["steps"]) == (6, 6, 12)
    assert_identical(snapshot(resumed), expected)

    # killed in step 10 (index 9): resumes from the checkpoint of step 8 and repeats steps 9 and 10
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "crash", task=AutoencoderTask(fail_at=9))
    assert [int(r["step"]) for r in read_log(tmp_path / "crash")] == list(range(1, 10))
    recovered, summary = run(tmp_path / "crash", task=AutoencoderTask(init_seed=7))
    assert summary["start_step"] == 8
    assert_identical(snapshot(recovered), expected)
    log, log_straight = read_log(tmp_path / "crash"), read_log(tmp_path / "straight")
    assert [r["step"] for r in log] == [str(s) for s in range(1, 13)]  # rows after the checkpoint were dropped
    assert [r["loss"] for r in log] == [r["loss"] for r in log_straight]

    # a finished run asked for more steps continues
    more, summary = run(tmp_path / "straight", task=AutoencoderTask(), steps=14)
    assert (summary["start_step"], summary["steps"]) == (12, 14) and more.seen == 14 * 8


def test_time_limit_checkpoints_and_the_same_call_continues(tmp_path, monkeypatch):
    straight, _ = run(tmp_path / "straight")
    expected = snapshot(straight)

    clock = iter(range(10_000))  # fit() reads the clock once at its start and once after every step: 1 s per read
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    limited, summary = run(tmp_path / "limited", time_limit_s=4.5)
    monkeypatch.undo()
    assert summary["time_limited"] and summary["steps"] == summary["steps_run"] < 12
    stopped = summary["steps"]
    assert training.load_checkpoint(tmp_path / "limited" / training.CHECKPOINT)["step"] == stopped
    assert limited.seen == stopped * 8

    resumed, summary = run(tmp_path / "limited", task=AutoencoderTask(init_seed=3), time_limit_s=3600)
    assert (summary["start_step"], summary["steps"], summary["time_limited"]) == (stopped, 12, False)
    assert_identical(snapshot(resumed), expected)
    with pytest.raises(ValueError, match="time_limit_s"):
        config(tmp_path / "bad", time_limit_s=0)


def test_checkpoint_is_weights_only_atomic_and_validated(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(out, steps=8)
    path = out / "checkpoint.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["step"] == 8 and ckpt["extra"]["seen"] == 64 and ckpt["config"]["batch_size"] == 8
    assert {"modules", "optimizers", "schedulers", "ema", "rng"} <= set(ckpt)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "log.csv", "samples"]

    # a write that fails before the rename leaves the previous checkpoint intact and no temporary file
    good = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        run(out, steps=12)
    monkeypatch.undo()
    assert path.read_bytes() == good and not [p for p in out.iterdir() if p.name.startswith(".")]

    # mismatched task or settings
    with pytest.raises(ValueError, match=f"checkpoint {path} does not match"):
        run(out, task=AutoencoderTask(width=8), steps=12)
    with pytest.raises(ValueError, match="batch_size=8"):
        run(out, steps=12, batch_size=4)

    # corrupt files
    for junk in (b"not a checkpoint", good[: len(good) // 2]):
        path.write_bytes(junk)
        with pytest.raises(ValueError, match=f"checkpoint {path} is corrupt"):
            run(out, steps=12)
    torch.save({"some": "dict"}, path)
    with pytest.raises(ValueError, match=f"checkpoint {path} is not an armlab training checkpoint"):
        run(out, steps=12)


def test_speed_options_change_nothing_on_the_cpu(tmp_path):
    """compile (traced by torch.compile's aot_eager backend: graphs captured, no generated code), data_on_device and
    checkpoints=False leave a CPU run's weights, EMA, optimizer state and logged losses exactly as they are without
    them; checkpoints=False writes no checkpoint; bad values are refused in one sentence."""
    straight, _ = run(tmp_path / "straight")
    expected = snapshot(straight)
    task = AutoencoderTask()
    summary = Trainer(task, {"image": toy_images()}, config(tmp_path / "fast", compile="aot_eager",
                                                              data_on_device="on", checkpoints=False)).fit()
    assert summary["steps"] == 12 and summary["images_per_s"] > 0
    assert_identical(snapshot(task), expected)
    assert task.trainer.data["image"].device.type == "cpu" and task.trainer.data_on_device
    assert getattr(task.ae, "_compiled_call_impl", None) is not None  # compiled in place: the same module
    assert not hasattr(task.trainer.ema["ae"].module, "_compiled_call_impl") or \
        task.trainer.ema["ae"].module._compiled_call_impl is None  # the EMA copy was made before
    assert task.ae.state_dict().keys() == straight.ae.state_dict().keys()
    assert [r["loss"] for r in read_log(tmp_path / "fast")] == [r["loss"] for r in read_log(tmp_path / "straight")]
    assert not (tmp_path / "fast" / "checkpoint.pt").exists()
    assert config(tmp_path, compile=True).compile == "default" and config(tmp_path, compile=False).compile == "off"
    with pytest.raises(ValueError, match="compile must be one of"):
        config(tmp_path, compile="fastest")
    with pytest.raises(ValueError, match="data_on_device"):
        config(tmp_path, data_on_device="gpu")


def test_images_per_s_stops_before_the_last_writes(tmp_path, monkeypatch):
    """The rate times the training steps: the samples and the checkpoint written after the last step are not in it."""
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    task = AutoencoderTask()
    trainer = Trainer(task, {"image": toy_images()}, config(tmp_path / "run", steps=5, sample_every=5,
                                                                     checkpoint_every=1000))
    step = task.train_step

    def timed_step(batch, s):  # one second per step
        clock[0] += 1.0
        return step(batch, s)

    def slow_write(*a, **k):  # ten seconds per write of samples or checkpoint
        clock[0] += 10.0

    monkeypatch.setattr(task, "train_step", timed_step)
    monkeypatch.setattr(trainer, "write_samples", slow_write)
    monkeypatch.setattr(trainer, "save_checkpoint", slow_write)
    summary = trainer.fit()
    assert summary["images_per_s"] == pytest.approx(4 * 8 / 4.0)  # steps 2-5: 4 steps of 8 images in 4 s


def test_conditional_gan_task(tmp_path):
    task = TinyConditionalGAN()
    trainer = Trainer(task, gan_data(), config(tmp_path, steps=6, batch_size=6, log_every=3, sample_every=3))
    assert not trainer.amp and not trainer.channels_last and trainer.device.type == "cpu"  # CPU defaults
    summary = trainer.fit()
    assert set(summary["losses"]) == {"d", "g"} and all(np.isfinite(v) for v in summary["losses"].values())
    seen = task.batches[0]
    assert seen["image"][0] == torch.float32 and -1 <= seen["image"][1] < seen["image"][2] <= 1
    assert seen["class_id"][0] == torch.long and seen["target"][0] == torch.float32 and seen["image"][3] == 6
    assert (tmp_path / "samples" / "step_000003.png").is_file() and (tmp_path / "samples" / "step_000006.png").is_file()
    assert not any(torch.equal(a, b) for a, b in zip(task.G.parameters(), trainer.ema["G"].module.parameters()))
    # spectral-norm buffers are checkpointed (and EMA'd G restored) exactly
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert any(k.endswith("_u") for k in ckpt["modules"]["D"])
    assert ckpt["ema"]["G"].keys() == task.G.state_dict().keys()
    # without EMA, sampling uses G itself: in eval mode, leaving its batch-norm statistics and training mode alone
    plain = TinyConditionalGAN()
    trainer = Trainer(plain, gan_data(), config(tmp_path / "no_ema", ema_decay=0.0))
    assert plain.eval_net("G") is plain.G
    before = {k: v.clone() for k, v in plain.G.state_dict().items()}
    path = trainer.write_samples(0)
    assert path.name == "step_000000.png" and cv2.imread(str(path)).shape == (2 * 18 + 2, 2 * 18 + 2, 3)
    assert_identical(plain.G.state_dict(), before)
    assert plain.G.training and plain.D.training


# ------------------------------------------------------------------------------------------------------ distributed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, ports, root):
    """One torchrun-like process: a GAN run where the Trainer owns the process group, then an autoencoder run in a
    group the caller set up."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    root = Path(root)
    gan = TinyConditionalGAN(init_seed=rank)  # different initial weights: DDP broadcasts rank 0's
    Trainer(gan, gan_data(), config(root / "gan", steps=4, batch_size=6, checkpoint_every=2, sample_every=2)).fit()
    owned_group_destroyed = not dist.is_initialized()

    os.environ["MASTER_PORT"] = str(ports[1])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ae = AutoencoderTask(noise=0.0)
    summary = Trainer(ae, {"image": toy_images()}, config(root / "ae", steps=6, checkpoint_every=3)).fit()
    result = {
        "gan": {f"{n}.{k}": v for n, m in gan.modules().items() for k, v in m.state_dict().items()},
        "gan_ema": gan.trainer.ema["G"].state_dict(),
        "ae": ae.ae.state_dict(),
        "main": is_main_process(),
        "owned_group_destroyed": owned_group_destroyed,
        "group_kept": dist.is_initialized(),
        "steps": summary["steps"],
    }
    dist.destroy_process_group()
    torch.save(result, root / f"rank{rank}.pt")


def test_ddp_two_cpu_processes(tmp_path):
    mp.spawn(_ddp_worker, args=(2, (_free_port(), _free_port()), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert (r0["main"], r1["main"]) == (True, False)
    assert r0["owned_group_destroyed"] and r1["owned_group_destroyed"] and r0["group_kept"] and r1["group_kept"]
    assert r0["steps"] == r1["steps"] == 6
    for key in ("gan", "gan_ema", "ae"):
        assert_identical(r0[key], r1[key])
    for name in ("gan", "ae"):  # one checkpoint, one log, written by rank 0 only
        out = tmp_path / name
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "log.csv", "samples"]
        steps = [int(r["step"]) for r in read_log(out)]
        assert steps == sorted(set(steps))
    assert json.loads((tmp_path / "ae" / "config.json").read_text())["world_size"] == 2
    ckpt = torch.load(tmp_path / "gan" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["world_size"] == 2

    # two processes with half batches each = one process with the whole batch (gradients are averaged)
    single, _ = run(tmp_path / "single", task=AutoencoderTask(noise=0.0), steps=6, checkpoint_every=3)
    for k, v in single.ae.state_dict().items():
        torch.testing.assert_close(r0["ae"][k], v, rtol=1e-4, atol=1e-5)
