"""One error type for the user's mistakes: `ArmlabError` is exit code 2 and one sentence; anything else a bug.

The tests plant errors inside a library function that ``armlab dataset verify`` calls, and run the real
`armlab_scripts.cli.main`: the mapping lives there alone.
"""

from __future__ import annotations

import pytest

import robot_env.dataset
from armlab_scripts._common import UsageError
from armlab_scripts.cli import BUG_NOTE, main
from generative.data import DataError as GenerativeDataError
from robot_env.io import errors as E
from robot_env.io.atomic import atomic_write_text, make_dirs
from robot_env.io.dataset_format import DatasetError, DatasetParamError
from robot_env.io.video import VideoWriteError


def _plant(monkeypatch, exc: BaseException) -> None:
    def verify(root):
        raise exc

    monkeypatch.setattr(robot_env.dataset, "verify", verify)


@pytest.mark.parametrize("exc", [ValueError("planted bug"), FileNotFoundError("planted bug"),
                                 RuntimeError("planted bug"), KeyError("planted bug"), TypeError("planted bug")],
                         ids=lambda e: type(e).__name__)
def test_a_planted_bug_keeps_its_traceback_and_exits_1(monkeypatch, capsys, tmp_path, exc):
    _plant(monkeypatch, exc)
    assert main(["dataset", "verify", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert f"{type(exc).__name__}: " in err and "planted bug" in err
    assert err.rstrip().endswith(BUG_NOTE) and "armlab: error:" not in err


MISTAKES = [
    E.ArmlabError("planted mistake"), E.ConfigError("planted mistake"), E.DataError("planted mistake"),
    E.PathError("planted mistake"), E.MissingPathError("planted mistake"), E.UnwritablePathError("planted mistake"),
    E.DeviceError("planted mistake"), UsageError("planted mistake"), DatasetError("planted mistake"),
    GenerativeDataError("planted mistake"), VideoWriteError("planted mistake"),
    E.ParamError("root", "{name} is a planted mistake"), DatasetParamError("root", "{name} is a planted mistake"),
    E.ConfigError("planted\nmistake over\n  three lines"),
]


@pytest.mark.parametrize("exc", MISTAKES, ids=lambda e: type(e).__name__)
def test_every_armlab_error_is_one_sentence_and_exit_2(monkeypatch, capsys, tmp_path, exc):
    _plant(monkeypatch, exc)
    assert main(["dataset", "verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("armlab: error: ") and "Traceback" not in err
    assert "planted" in err and "mistake" in err


def test_ctrl_c_is_130(monkeypatch, capsys, tmp_path):
    _plant(monkeypatch, KeyboardInterrupt())
    assert main(["dataset", "verify", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "armlab: interrupted\n"


def test_the_family_keeps_the_builtin_bases_python_callers_catch():
    assert issubclass(E.ConfigError, ValueError) and issubclass(E.DataError, ValueError)
    assert issubclass(E.ParamError, E.ConfigError) and issubclass(DatasetParamError, DatasetError)
    assert issubclass(E.MissingPathError, FileNotFoundError) and issubclass(E.UnwritablePathError, PermissionError)
    assert issubclass(VideoWriteError, OSError) and issubclass(E.DeviceError, RuntimeError)
    for cls in (UsageError, DatasetError, GenerativeDataError, VideoWriteError, E.ParamError):
        assert issubclass(cls, E.ArmlabError)
    assert str(E.MissingPathError("no such run x.")) == "no such run x."


def test_an_output_path_under_a_file_is_an_unwritable_path_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(E.UnwritablePathError, match="file"):
        atomic_write_text(tmp_path / "file" / "out.json", "{}")
    with pytest.raises(E.UnwritablePathError, match="choose another output path"):
        make_dirs(tmp_path / "file" / "run")
    (tmp_path / "folder").mkdir()
    with pytest.raises(E.UnwritablePathError, match="folder"):
        atomic_write_text(tmp_path / "folder", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"] and not any((tmp_path / "folder").iterdir())
