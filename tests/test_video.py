"""Video writers read back with OpenCV/Pillow, tiling and overlays, RolloutRecorder, RecordVideo, `render` command."""

import argparse
import json
import sys
import types

import cv2
import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import robot_env  # noqa: F401  (registers the ids)
from armlab_scripts import render
from armlab_scripts._common import UsageError
from controllers.evaluation import Controller
from robot_env import CLOSED_LOOP_IDS, OPEN_LOOP_IDS
from robot_env import video as video_mod
from robot_env.video import RolloutRecorder, VideoWriteError, VideoWriter, draw_overlay, tile, write_video


def _frames(n=12, w=96, h=64):
    """A white square moving right across a dark gradient: every frame differs."""
    base = np.zeros((h, w, 3), np.uint8)
    base[:, :, 2] = np.linspace(30, 120, w, dtype=np.uint8)
    out = []
    for i in range(n):
        f = base.copy()
        x = 4 + i * (w - 24) // max(n - 1, 1)
        f[h // 4 : h // 4 + 16, x : x + 16] = 255
        out.append(f)
    return out


def _read(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[:, :, ::-1])
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fourcc, fps


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- writers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ext", "fourcc"), [(".webm", "VP90"), (".mp4", "FMP4")])
def test_webm_and_mp4_read_back(tmp_path, ext, fourcc):
    frames = _frames()
    path = write_video(tmp_path / f"clip{ext}", frames, fps=12)
    got, codec, fps = _read(path)
    assert len(got) == len(frames) and got[0].shape == (64, 96, 3)
    assert codec == fourcc and fps == pytest.approx(12)
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(got, got[1:]))  # frames differ
    assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(got, frames)) < 8  # and are what was written
    assert _leftovers(tmp_path) == []


def test_gif_reads_back(tmp_path):
    frames = _frames(n=6)
    path = write_video(tmp_path / "clip.gif", frames, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 6 and im.size == (96, 64) and im.info["duration"] == 100
        got = []
        for i in range(im.n_frames):
            im.seek(i)
            got.append(np.asarray(im.convert("RGB")))
    assert all(not np.array_equal(a, b) for a, b in zip(got, got[1:]))
    assert np.abs(got[-1].astype(int) - frames[-1]).mean() < 8


def test_odd_sizes_are_padded_not_cropped(tmp_path):
    frames = _frames(n=4, w=95, h=63)
    got, _, _ = _read(write_video(tmp_path / "odd.mp4", frames))
    assert len(got) == 4 and got[0].shape == (64, 96, 3)
    assert np.abs(got[-1][:63, :95].astype(int) - frames[-1]).mean() < 8


def test_bad_extension_raises_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported video extension '\.avi'.*\.webm, \.mp4, \.gif"):
        VideoWriter(tmp_path / "clip.avi")
    with pytest.raises(ValueError, match="unsupported video extension"):
        VideoWriter(tmp_path / "clip")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_path_raises_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(VideoWriteError, match="is not a folder"):
        VideoWriter(tmp_path / "file" / "clip.webm")


def test_a_writer_opencv_cannot_open_is_reported(tmp_path, monkeypatch):
    class Closed:
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802  (OpenCV's name)
            return False

    monkeypatch.setattr(cv2, "VideoWriter", Closed)  # the module robot_env.io.video writes with
    with pytest.raises(VideoWriteError, match="could not open a VP90 writer"):
        VideoWriter(tmp_path / "clip.webm", size=(64, 48))
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_video_leaves_nothing_behind(tmp_path):
    with pytest.raises(KeyError), VideoWriter(tmp_path / "clip.mp4") as w:
        w.write(_frames(1)[0])
        raise KeyError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VideoWriteError, match="no frames"):
        VideoWriter(tmp_path / "empty.webm").close()
    assert list(tmp_path.iterdir()) == []


def test_frames_must_match(tmp_path):
    with VideoWriter(tmp_path / "clip.webm") as w:
        w.write(_frames(1)[0])
        with pytest.raises(ValueError, match="differs"):
            w.write(np.zeros((10, 10, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            w.write(np.zeros((64, 96, 3), np.float32))
    assert _read(tmp_path / "clip.webm")[0][0].shape == (64, 96, 3)


def test_tile_and_overlay():
    a, b, c = (np.full((10, 20, 3), v, np.uint8) for v in (50, 100, 150))
    assert tile([a]).shape == (10, 20, 3)
    two = tile([a, b])
    assert two.shape == (10, 40, 3) and two[0, 0, 0] == 50 and two[0, 39, 0] == 100
    four = tile([a, b, c, a])
    assert four.shape == (20, 40, 3) and four[15, 25, 0] == 50
    with pytest.raises(ValueError, match="share one shape"):
        tile([a, np.zeros((5, 5, 3), np.uint8)])
    frame = np.zeros((120, 160, 3), np.uint8)
    ring = draw_overlay(frame, point=(80, 60))
    assert ring[60, 80].sum() == 0 and ring[50:70, 70:90].any() and not frame.any()
    assert not draw_overlay(frame, point=(500, 60)).any() and not draw_overlay(frame, point=(np.nan, 1)).any()
    assert draw_overlay(frame, ["step 3"])[:20].any()


# -- the recorder ----------------------------------------------------------------------------------
def test_recorder_closed_loop_one_frame_per_step(tmp_path):
    env = gym.make(CLOSED_LOOP_IDS["velocity"])
    try:
        rec = RolloutRecorder(env, ["front", "wrist"], size=(64, 48), hold=0.25)
        assert rec.frame_size == (128, 48) and rec.fps == pytest.approx(24)
        out = rec.record(lambda e, o: e.action_space.sample(), episodes=2, seed=0)
    finally:
        env.close()
    per_episode = 1 + env.unwrapped.max_steps + 6  # reset, each step, the held end
    assert out.n_frames == len(out.frames) == 2 * per_episode
    assert out.frames[0].shape == (48, 128, 3) and len(out.distances) == 2
    assert not np.array_equal(out.frames[1], out.frames[5])


def test_recorder_open_loop_replays_the_signal_and_ends_where_the_step_ended(tmp_path):
    env = gym.make(OPEN_LOOP_IDS["state"])
    u = env.unwrapped
    x = np.array([0.6, -0.4])
    try:
        rec = RolloutRecorder(env, "top", size=(64, 48), fps=24, hold=0)
        with VideoWriter(tmp_path / "open.webm", fps=rec.fps, size=rec.frame_size) as writer:
            out = rec.record(Controller("fixed", lambda e, o: x), episodes=1, seed=5, writer=writer)
        assert out.frames == [] and out.n_frames == writer.frames == 1 + u.task.n_steps // 10
        assert u.evaluations == 0  # the replay is not counted as an optimizer's evaluation
        y_end = float(np.linalg.norm(u.arm.ee_position() - u.context.target))
        assert y_end == pytest.approx(out.distances[0], abs=1e-9)
    finally:
        env.close()
    got, _, fps = _read(tmp_path / "open.webm")
    assert len(got) == out.n_frames and fps == pytest.approx(24)


def test_recorder_accepts_sb3_style_models():
    class Model:
        def predict(self, obs, deterministic=False):
            assert deterministic
            return np.zeros(2), None

    env = gym.make(CLOSED_LOOP_IDS["fixed"], horizon=0.25)
    try:
        out = RolloutRecorder(env, size=(32, 24), hold=0).record(Model(), episodes=1)
    finally:
        env.close()
    assert out.n_frames == 1 + env.unwrapped.max_steps
    with pytest.raises(TypeError, match="policy"):
        video_mod.as_policy(3)


def test_rgb_array_render_works_with_record_video(tmp_path, monkeypatch):
    """Gymnasium's RecordVideo collects the env's rgb_array frames at its render_fps. MoviePy, which it
    encodes with, is not installed here: a stand-in encoder writes the frames it is handed with our MP4
    writer, so everything on the env's side of the wrapper is exercised."""
    handed = {}

    class ImageSequenceClip:
        def __init__(self, frames, fps):
            handed["frames"], handed["fps"] = list(frames), fps

        def write_videofile(self, path, logger=None):
            write_video(path, handed["frames"], handed["fps"])

    mods = {name: types.ModuleType(name) for name in
            ("moviepy", "moviepy.video", "moviepy.video.io", "moviepy.video.io.ImageSequenceClip")}
    mods["moviepy.video.io.ImageSequenceClip"].ImageSequenceClip = ImageSequenceClip
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)

    env = gym.make(CLOSED_LOOP_IDS["fixed"], render_mode="rgb_array", render_size=(64, 48), horizon=0.25)
    env = gym.wrappers.RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda ep: True)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        done = term or trunc
    env.close()
    steps = env.unwrapped.max_steps
    assert handed["fps"] == env.unwrapped.metadata["render_fps"] == 24
    assert len(handed["frames"]) == steps + 1 and handed["frames"][0].shape == (48, 64, 3)
    (video,) = (tmp_path / "videos").glob("*.mp4")
    assert len(_read(video)[0]) == steps + 1


# -- the render command ------------------------------------------------------------------------------
def _run(*argv):
    p = argparse.ArgumentParser()
    render.add_arguments(p)
    return render.run(p.parse_args(list(argv)))


def test_render_random_closed_loop_webm(tmp_path, capsys):
    out = tmp_path / "videos" / "rollout.webm"
    assert _run("--random", "--env", CLOSED_LOOP_IDS["velocity"], "--episodes", "2", "--camera", "front,side",
                "--size", "64x48", "--out", str(out), "--seed", "3", "--json") == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got, codec, _ = _read(out)
    assert codec == "VP90" and len(got) == figures["frames"] and got[0].shape == (48, 128, 3)
    assert figures["episodes"] == 2 and not np.array_equal(got[0], got[len(got) // 2])


def test_render_cmaes_open_loop_mp4_and_gif(tmp_path, capsys):
    for name in ("cmaes.mp4", "cmaes.gif"):
        assert _run("--controller", "cmaes", "--budget", "60", "--episodes", "1", "--size", "48x32",
                    "--out", str(tmp_path / name), "--json") == 0
        figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert figures["env_id"] == "armlab/ReachSignalFixed-v0" and figures["median_y"] < 0.1
    got, _, _ = _read(tmp_path / "cmaes.mp4")
    assert len(got) == figures["frames"] and got[0].shape == (32, 48, 3)
    with Image.open(tmp_path / "cmaes.gif") as im:  # Pillow merges the held, identical frames into one
        assert im.size == (48, 32) and 1 < im.n_frames <= figures["frames"]
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert sum(durations) == figures["frames"] * video_mod.gif_frame_ms(figures["fps"]) == figures["frames"] * 40


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--out", "{tmp}/x.avi"], "unsupported video extension"),
        (["--camera", "front,back"], "unknown camera back"),
        (["--size", "64by48"], "--size must look like"),
        (["--env", "armlab/Nope-v0"], "unknown env id"),
        (["--robot", "ur5"], "unknown robot"),
        (["--controller", "cmaes", "--env", "armlab/ReachFixed-v0"], "open-loop env"),
        (["--episodes", "0"], "--episodes"),
    ],
)
def test_render_bad_input_is_one_sentence(tmp_path, argv, match):
    argv = ["--out", str(tmp_path / "x.webm"), *(a.format(tmp=tmp_path) for a in argv)]  # the last --out wins
    with pytest.raises(UsageError, match=match):
        _run(*argv)
    assert list(tmp_path.iterdir()) == []


def test_render_unwritable_out_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is not a folder"):
        _run("--episodes", "1", "--size", "32x24", "--out", str(tmp_path / "file" / "x.webm"))


def test_render_run_needs_policy_controller(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "controllers.rl", types.ModuleType("controllers.rl"))
    with pytest.raises(UsageError, match=r"policy_controller.*--random or --controller cmaes\.$"):
        _run("--run", str(tmp_path), "--out", str(tmp_path / "x.webm"))


def test_render_run_plays_the_runs_policy_on_its_env(tmp_path, monkeypatch, capsys):
    rl = types.ModuleType("controllers.rl")
    seen = {}

    def policy_controller(run_dir):
        seen["run_dir"] = run_dir
        run = types.SimpleNamespace(config={"env_id": CLOSED_LOOP_IDS["fixed"], "env_kwargs": {"horizon": 0.25}})
        return Controller("fake agent", lambda env, obs: np.zeros(env.action_space.shape), info={"run": run})

    rl.policy_controller = policy_controller
    monkeypatch.setitem(sys.modules, "controllers.rl", rl)
    assert _run("--run", "runs/ppo", "--episodes", "1", "--size", "32x24", "--out", str(tmp_path / "agent.mp4"),
                "--json") == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert seen["run_dir"] == "runs/ppo" and figures["env_id"] == CLOSED_LOOP_IDS["fixed"]
    assert figures["frames"] == 1 + 6 + 12  # reset, 6 control steps of 0.25 s at 24 Hz, 0.5 s held
