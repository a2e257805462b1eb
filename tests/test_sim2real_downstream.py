"""generative.sim2real.downstream and .benchmark: the camera model every sim-to-real figure is measured with, and
the table's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generative.data import DataError
from generative.sim2real.benchmark import Labelled, Row, closure, run_table, summarize
from generative.sim2real.downstream import TargetNet, _augment, evaluate_downstream, train_downstream


def _squares(n: int, size: int = 32, seed: int = 0) -> Labelled:
    """A grey noisy background with one coloured square; its centre is the target, its colour the class."""
    g = np.random.default_rng(seed)
    x = (g.normal(100, 10, (n, size, size, 3))).clip(0, 255)
    targets, classes = np.zeros((n, 2), np.float32), g.integers(0, 3, n)
    colours = ((230, 40, 40), (40, 200, 40), (60, 60, 230))
    for i in range(n):
        cx, cy = g.integers(4, size - 4, 2)
        x[i, cy - 3 : cy + 3, cx - 3 : cx + 3] = colours[classes[i]]
        targets[i] = (cx / size, cy / size)  # the 6x6 square's centre, in pixel_norm
    img = torch.from_numpy(x.astype(np.uint8)).permute(0, 3, 1, 2).contiguous()
    return Labelled(img, torch.from_numpy(targets), torch.from_numpy(classes))


def test_augmentation_moves_the_label_with_the_image():
    x = torch.zeros(64, 1, 16, 16)
    pos = torch.rand(64, 2) * 0.6 + 0.2
    cols, rows = (pos[:, 0] * 16 - 0.5).round().long(), (pos[:, 1] * 16 - 0.5).round().long()
    x[torch.arange(64), 0, rows, cols] = 1.0
    pos = torch.stack([(cols + 0.5) / 16, (rows + 0.5) / 16], 1)
    y, p = _augment(x, pos, pad=2, gen=torch.Generator().manual_seed(0))
    flat = y[:, 0].flatten(1).argmax(1)
    found = torch.stack([(flat % 16 + 0.5) / 16, (flat // 16 + 0.5) / 16], 1)
    assert torch.allclose(found, p, atol=1e-6)
    assert not torch.allclose(p, pos)  # something moved


def test_training_learns_position_and_class_and_is_seeded():
    data, test = _squares(256), _squares(96, seed=1)
    untrained = evaluate_downstream(TargetNet().eval(), test.images, test.targets, test.classes)
    net = train_downstream(data.images, data.targets, data.classes, steps=150, batch_size=32, seed=0)
    r = evaluate_downstream(net, test.images, test.targets, test.classes)
    assert r["error_px"].shape == r["correct"].shape == (96,)
    assert r["error_px"].mean() < 0.5 * untrained["error_px"].mean()
    assert r["correct"].mean() > 0.8
    again = train_downstream(data.images, data.targets, data.classes, steps=150, batch_size=32, seed=0)
    assert np.array_equal(evaluate_downstream(again, test.images, test.targets, test.classes)["error_px"],
                          r["error_px"])
    with pytest.raises(DataError):
        train_downstream(data.images[:1], data.targets[:1], data.classes[:1])


def test_table_runs_rows_and_recomputes_its_own_arithmetic():
    data, test = _squares(128), _squares(48, seed=1)
    dim = data.with_images((data.images.float() * 0.3).to(torch.uint8))
    table = run_table({"sim": dim, "real": data, "mix": dim + data}, {"real": test},
                      [Row("sim", "sim"), Row("real", "real"), Row("mix", "mix")], seeds=(0, 1), steps=60,
                      workers=0)
    assert table["real"]["error_px"].shape == (2, 48)
    s = summarize(table, n_boot=200)
    rows = s["rows"]
    e = {k: float(np.mean(rows[k]["error_px_seeds"])) for k in rows}
    a = {k: float(np.mean(rows[k]["accuracy_seeds"])) for k in rows}
    assert rows["mix"]["closure_px"]["mean"] == pytest.approx(closure(e["sim"], e["mix"], e["real"]))
    assert rows["mix"]["closure_acc"]["mean"] == pytest.approx(closure(a["sim"], a["mix"], a["real"]))
    assert s["gap_px"] == pytest.approx(e["sim"] - e["real"])
    for k in rows:
        lo, mean, hi = (rows[k]["error_px"][q] for q in ("lo", "mean", "hi"))
        assert lo <= mean <= hi
    assert closure(10.0, 4.0, 2.0) == pytest.approx(0.75)
    assert np.isnan(closure(1.0, 1.0, 1.0))
