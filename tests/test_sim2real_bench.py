"""`armlab bench sim2real --quick`: the whole pipeline runs, its figure is written, and its arithmetic is
recomputed from its own figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from armlab_scripts import cli


def test_quick_bench_prints_a_table_whose_arithmetic_holds(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["bench", "sim2real", "--quick", "--out", str(out), "--workers", "0", "--json"]) == 0
    text = capsys.readouterr().out
    f = json.loads(text.strip().splitlines()[-1])
    assert "position error (px)" in text and "gap closure" in text
    assert Path(f["figure"]).is_file() and Path(f["figure"]).stat().st_size > 10_000
    rows = f["rows"]
    assert set(rows) == set(f["labels"]) and len(rows) == 12
    e = {k: float(np.mean(r["error_px_seeds"])) for k, r in rows.items()}
    a = {k: float(np.mean(r["accuracy_seeds"])) for k, r in rows.items()}
    for k, r in rows.items():
        assert r["n_seeds"] == f["settings"]["seeds"]
        assert r["error_px"]["mean"] == pytest.approx(e[k])
        assert r["accuracy"]["mean"] == pytest.approx(a[k])
        assert r["error_px"]["lo"] <= r["error_px"]["mean"] <= r["error_px"]["hi"]
        if k not in ("sim", "real"):
            gap = e["real"] - e["sim"]
            assert r["closure_px"]["mean"] == pytest.approx((e[k] - e["sim"]) / gap)
    assert f["gap_px"] == pytest.approx(e["sim"] - e["real"])
    assert f["e_sim_over_e_real"] == pytest.approx(e["sim"] / e["real"])
    assert f["psnr_gain"] == pytest.approx(f["psnr"]["translated"] - f["psnr"]["sim"])
    assert f["speed_ratio"] == pytest.approx(f["images_per_s_look"] / f["images_per_s_cyclegan"])
    assert f["speed_ratio_cut"] == pytest.approx(f["images_per_s_cut"] / f["images_per_s_cyclegan"])
    assert f["closure_per_minute_translated_cut"] == pytest.approx(
        rows["translated_cut"]["closure_px"]["mean"] / f["translator_cut_minutes"])
    t = f["targets"]
    assert t["speed_ratio"] == (f["speed_ratio"] >= 3.0)
    assert t["translation_closure"] == (rows["translated"]["closure_px"]["mean"] >= 0.6)
    assert t["e_sim_over_e_real"] == (f["e_sim_over_e_real"] >= 2.0)
    # a second call reuses the datasets, the finished translator runs and the downstream models' figures
    assert cli.main(["bench", "sim2real", "--quick", "--out", str(out), "--workers", "0", "--json"]) == 0
    second = capsys.readouterr().out
    g = json.loads(second.strip().splitlines()[-1])
    assert second.count(": cached") == 11 * f["settings"]["seeds"]  # every downstream model came from the cache
    assert g["translator_steps"] == f["translator_steps"]
    assert g["rows"]["sim"]["error_px_seeds"] == f["rows"]["sim"]["error_px_seeds"]  # same seeds, same figures
    assert g["translator_minutes"] == pytest.approx(f["translator_minutes"])
