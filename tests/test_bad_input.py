"""The bad-input matrix: every ``armlab`` subcommand, given what a user gets wrong, answers with one sentence.

For each subcommand: a missing input path, a path of the wrong kind (a file for a folder and back), an output
that cannot be written (a path under a regular file: the tests run as root, which ignores permissions), a
corrupt or truncated input (image, checkpoint, model zip, manifest, config YAML), numbers out of range and
unknown names (robot, env id, algorithm, sampler, condition). Each must exit with 2 and exactly one line on
stderr, ``armlab: error: ...`` naming the thing, no traceback, and leave every existing file as it was (the
whole folder of inputs and outputs is hashed before and after). The real `armlab_scripts.cli.main` runs
in-process. Property-based tests (hypothesis) then throw open-ended values at the env and the parsers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from armlab_scripts.cli import build_parser, main

# ------------------------------------------------------------------------------------------------ shared inputs


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_dataset):
    """One folder of inputs, good and bad, and of existing outputs, built once for the module."""
    w = tmp_path_factory.mktemp("bad_input")
    ds = shutil.copytree(tiny_dataset(), w / "ds")  # a good armlab dataset (24 frames, 16 px)
    (w / "file.txt").write_text("a regular file, not a folder\n")
    junk = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 8
    (w / "imgs").mkdir()
    (w / "imgs" / "a.png").write_bytes(junk)  # a folder of one corrupt image
    (w / "corrupt.png").write_bytes(junk)
    (w / "corrupt.webm").write_bytes(b"\x1a\x45\xdf\xa3 truncated")
    # a dataset whose manifest.json is truncated
    bad_manifest = shutil.copytree(ds, w / "ds_bad_manifest")
    text = (bad_manifest / "manifest.json").read_text()
    (bad_manifest / "manifest.json").write_text(text[: len(text) // 2])
    # a generative run folder whose checkpoint is truncated, and one whose checkpoint is not a torch file
    for name, data in (("run_truncated", b"PK\x03\x04" + b"\x00" * 40), ("run_text", b"not a checkpoint\n")):
        (w / name).mkdir()
        (w / name / "checkpoint.pt").write_bytes(data)
        (w / name / "config.json").write_text("{\"model\": ")
    (w / "run_empty").mkdir()  # a folder that holds no run
    (w / "run_noada").mkdir()  # a GAN run's log without ADA's columns, and one whose ADA rows are all torn
    (w / "run_noada" / "log.csv").write_text("step,d_loss\n50,0.5\n")
    (w / "run_tornada").mkdir()
    (w / "run_tornada" / "log.csv").write_text("step,ada_p,ada_rt\n50,nan,0.5\n100,0.")
    (w / "run_logonly").mkdir()  # a readable ADA log but no checkpoint
    (w / "run_logonly" / "log.csv").write_text("step,ada_p,ada_rt\n50,0.1,0.7\n100,0.2,0.6\n")
    # RL runs: one with a config.yml that is not YAML, one whose model.zip is truncated
    rl = w / "rl"
    (rl / "sac" / "ReachSignalFixed-v0_1").mkdir(parents=True)
    (rl / "sac" / "ReachSignalFixed-v0_1" / "config.yml").write_text("algo: [sac\nenv_id: {{{\n")
    (rl / "ppo" / "ReachSignalFixed-v0_1").mkdir(parents=True)
    (rl / "ppo" / "ReachSignalFixed-v0_1" / "config.yml").write_text(
        "algo: ppo\nenv_id: armlab/ReachSignalFixed-v0\nhyperparams: {}\nenv_kwargs: {}\nseed: 0\n"
        "normalize: false\nn_envs: 1\n")
    (rl / "ppo" / "ReachSignalFixed-v0_1" / "model.zip").write_bytes(b"PK\x03\x04 truncated zip")
    # existing outputs that must survive
    (w / "out").mkdir()
    (w / "out" / "old.json").write_text("{\"keep\": true}\n")
    return w


def tree_hash(root: Path) -> str:
    """Names, kinds and bytes of everything under ``root``."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode() + (b"/" if p.is_dir() else b""))
        if p.is_file():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------- the matrix
# (command, argv with {placeholders}, a word the sentence must contain). Placeholders: {w} the world folder,
# {ds} the good dataset, {file} a regular file, {missing} a path that does not exist, {under} a path under a file.
M, F, U = "{w}/no/such/thing", "{w}/file.txt", "{w}/file.txt/sub/out"
CG = ["--sim", "{ds}", "--real", "{ds}", "--out", "{w}/out/cg", "--steps", "1"]  # good cyclegan train inputs
DT = ["--data", "{ds}", "--out", "{w}/out/d", "--steps", "1"]  # good diffusion train inputs
CASES = [
    # --- dataset generate / merge / verify
    ("dataset generate", ["--out", U, "--n", "2", "--size", "16"], "file.txt"),
    ("dataset generate", ["--out", F, "--n", "2", "--size", "16"], "file.txt"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "0"], "--n"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--size", "-3"], "--size"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--workers", "0"], "--workers"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--shard", "3/2"], "shard"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--style", "cartoon"], "cartoon"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--randomize", "colours"], "colours"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--object-size", "-1"], "object"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--poses-from", M], "no/such/thing"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--poses-from", F], "file.txt"),
    ("dataset generate", ["--out", "{ds}", "--n", "2", "--size", "32"], "ds"),  # other settings in a dataset
    ("dataset merge", [M, "--out", "{w}/out/m"], "no/such/thing"),
    ("dataset merge", [F, "--out", "{w}/out/m"], "file.txt"),
    ("dataset merge", ["{w}/ds_bad_manifest", "--out", "{w}/out/m"], "manifest"),
    ("dataset merge", ["{ds}", "--out", U], "file.txt"),
    ("dataset verify", [M], "no/such/thing"),
    ("dataset verify", [F], "file.txt"),
    ("dataset verify", ["{w}/imgs"], "imgs"),
    ("dataset verify", ["{w}/ds_bad_manifest"], "manifest"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--format", "tar"], "--format"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--format", "wds", "--shard-size", "0"], "--shard-size"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--shard-size", "5"], "--shard-size"),  # files format
    ("dataset generate", ["--out", "{w}/out/g", "--n", "4", "--format", "wds", "--shard-size", "2", "--shard", "0/3"],
     "shard"),  # more jobs than tar shards
    ("dataset generate", ["--out", "{ds}", "--n", "24", "--size", "16", "--format", "wds"], "--format"),  # layout
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--outputs", "rgb,normals,label"], "normals"),
    ("dataset generate", ["--out", "{w}/out/g", "--n", "2", "--format", "wds", "--outputs", "depth,seg"], "--outputs"),
    ("dataset convert", ["--src", M, "--out", "{w}/out/c", "--format", "wds"], "no/such/thing"),
    ("dataset convert", ["--src", F, "--out", "{w}/out/c", "--format", "wds"], "file.txt"),
    ("dataset convert", ["--src", "{w}/ds_bad_manifest", "--out", "{w}/out/c", "--format", "wds"], "manifest"),
    ("dataset convert", ["--src", "{ds}", "--out", "{w}/out/c", "--format", "zip"], "--format"),
    ("dataset convert", ["--src", "{ds}", "--out", "{w}/out/c", "--format", "files"], "already"),
    ("dataset convert", ["--src", "{ds}", "--out", "{w}/out/c", "--format", "wds", "--shard-size", "-4"],
     "--shard-size"),
    ("dataset convert", ["--src", "{ds}", "--out", U, "--format", "wds"], "file.txt"),
    ("dataset convert", ["--src", "{ds}", "--out", "{ds}", "--format", "wds"], "--out"),
    # --- gan
    ("gan train", ["--data", M, "--out", "{w}/out/gan", "--steps", "1"], "no/such/thing"),
    ("gan train", ["--data", F, "--out", "{w}/out/gan", "--steps", "1"], "file.txt"),
    ("gan train", ["--data", "{w}/imgs", "--out", "{w}/out/gan", "--steps", "1"], "imgs"),
    ("gan train", ["--data", "{w}/ds_bad_manifest", "--out", "{w}/out/gan", "--steps", "1"], "manifest"),
    ("gan train", ["--data", "{ds}", "--out", U, "--steps", "1", "--size", "16"], "file.txt"),
    ("gan train", ["--data", "{ds}", "--out", F, "--steps", "1", "--size", "16"], "file.txt"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "-1"], "steps"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--size", "12"], "size"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--batch-size", "0"], "batch"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--lr", "-1"], "lr"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--cond", "colour"], "colour"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--loss", "l7"], "l7"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--device", "cuda:7"], "cuda"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--snapshot-every", "-2"],
     "--snapshot-every"),
    ("gan sample", ["--run", M, "--out", "{w}/out/s"], "no/such/thing"),
    ("gan sample", ["--run", F, "--out", "{w}/out/s"], "file.txt"),
    ("gan sample", ["--run", "{w}/run_empty", "--out", "{w}/out/s"], "run_empty"),
    ("gan sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/s"], "checkpoint"),
    ("gan sample", ["--run", "{w}/run_text", "--out", "{w}/out/s"], "checkpoint"),
    ("gan sample", ["--run", "{w}/run_text", "--out", "{w}/out/s", "--n", "0"], "--n"),
    ("gan sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/s", "--psi", "nan"], "--psi"),
    ("gan sample", ["--run", M, "--prompt", "a red cube", "--class", "cube", "--out", "{w}/out/s"], "--prompt"),
    ("gan eval", ["--run", M, "--data", "{ds}"], "no/such/thing"),
    ("gan eval", ["--run", "{w}/run_truncated", "--data", "{ds}"], "checkpoint"),
    ("gan eval", ["--run", "{w}/run_truncated", "--data", "{ds}", "--psi", "1.5"], "--psi"),
    ("gan eval", ["--run", "{w}/run_empty", "--data", M], "run_empty"),  # the run is checked first
    ("gan eval", ["--run", "{w}/run_truncated", "--data", "{ds}", "--snapshots"], "snapshot-every"),
    ("gan eval", ["--run", M, "--data", "{ds}", "--snapshots"], "no/such/thing"),
    ("gan export", ["--run", M, "--data", "{ds}", "--out", "{w}/out/gx"], "no/such/thing"),
    ("gan export", ["--run", "{w}/run_truncated", "--data", "{ds}", "--out", "{w}/out/gx"], "checkpoint"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--arch", "biggan"], "biggan"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--ada"], "--ada"),  # dcgan
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--arch", "progan", "--phase-steps", "0"],
     "--phase-steps"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--arch", "stylegan2", "--loss", "hinge"],
     "--loss"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--arch", "stylegan2", "--w-dim", "0"],
     "--w-dim"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--size", "16", "--arch", "stylegan2",
                   "--ada", "--ada-target", "1.5"], "--ada-target"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--size", "16", "--arch", "stylegan2",
                   "--ada", "--ada-kimg", "0"], "--ada-kimg"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--size", "16", "--arch", "stylegan2",
                   "--ada", "--ada-pipeline", "fancy"], "--ada-pipeline"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--size", "16", "--arch", "stylegan2",
                   "--r1-gamma", "-1"], "--r1-gamma"),
    ("gan train", ["--data", "{ds}", "--out", "{w}/out/gan", "--steps", "1", "--size", "16", "--arch", "progan",
                   "--augment", "color"], "--augment"),
    ("gan ada", ["--run", M], "no/such/thing"),
    ("gan ada", ["--run", F], "file.txt"),
    ("gan ada", ["--run", "{w}/run_empty"], "log.csv"),
    ("gan ada", ["--run", "{w}/run_noada"], "--ada"),
    ("gan ada", ["--run", "{w}/run_tornada"], "no logged ADA steps"),
    ("gan ada", ["--run", "{w}/run_tornada", "--window", "0"], "--window"),
    ("gan ada", ["--run", "{w}/run_tornada", "--window", "nan"], "--window"),
    ("gan ada", ["--run", "{w}/run_tornada", "--strength", "{ds}", "--p", "2"], "--p"),
    ("gan ada", ["--run", "{w}/run_tornada", "--strength", "{ds}", "--p", "nan"], "--p"),
    ("gan ada", ["--run", "{w}/run_logonly", "--strength", "{ds}"], "checkpoint"),  # a log, no checkpoint
    ("gan latent", ["--run", M, "--out", "{w}/out/gl"], "no/such/thing"),
    ("gan latent", ["--run", F, "--out", "{w}/out/gl"], "file.txt"),
    ("gan latent", ["--run", "{w}/run_empty", "--out", "{w}/out/gl"], "run_empty"),
    ("gan latent", ["--run", "{w}/run_truncated", "--out", "{w}/out/gl"], "checkpoint"),
    ("gan latent", ["--run", "{w}/run_truncated", "--out", "{w}/out/gl", "--project", M], "no/such/thing"),
    ("gan latent", ["--run", "{w}/run_truncated", "--out", "{w}/out/gl", "--psi", "big"], "--psi"),
    ("gan latent", ["--run", "{w}/run_truncated", "--out", "{w}/out/gl", "--n-frames", "1"], "--n-frames"),
    ("gan latent", ["--run", "{w}/run_truncated", "--out", "{w}/out/gl", "--project-steps", "0"], "--project-steps"),
    ("diffusion export", ["--run", M, "--data", "{ds}", "--out", "{w}/out/dx"], "no/such/thing"),
    ("diffusion export", ["--run", "{w}/run_truncated", "--data", "{ds}", "--out", "{w}/out/dx"], "checkpoint"),
    # --- cyclegan / sim2real
    ("cyclegan train", ["--sim", M, "--real", "{ds}", "--out", "{w}/out/cg", "--steps", "1"], "no/such/thing"),
    ("cyclegan train", ["--sim", "{ds}", "--real", F, "--out", "{w}/out/cg", "--steps", "1"], "file.txt"),
    ("cyclegan train", ["--sim", "{w}/imgs", "--real", "{ds}", "--out", "{w}/out/cg", "--steps", "1"], "imgs"),
    ("cyclegan train", ["--sim", "{ds}", "--real", "{ds}", "--out", U, "--steps", "1", "--size", "16"], "file.txt"),
    ("cyclegan train", [*CG, "--size", "10"], "size"),
    ("cyclegan train", [*CG, "--batch-size", "0"], "batch"),
    ("cyclegan train", [*CG, "--ema-decay", "2"], "ema"),
    ("cyclegan train", [*CG, "--generator", "bogus"], "bogus"),
    ("cyclegan train", [*CG, "--generator", "look", "--lr", "0"], "--lr"),
    ("cyclegan train", [*CG, "--pairs", "100000"], "--pairs"),
    ("cyclegan train", [*CG, "--method", "bogus"], "bogus"),
    ("cyclegan train", [*CG, "--nce-weight", "1"], "--nce-weight"),
    ("cyclegan train", [*CG, "--method", "cut", "--nce-weight", "-1"], "--nce-weight"),
    ("cyclegan translate", ["--run", M, "--in", "{ds}", "--out", "{w}/out/t"], "no/such/thing"),
    ("cyclegan translate", ["--run", "{w}/run_truncated", "--in", "{ds}", "--out", "{w}/out/t"], "checkpoint"),
    ("cyclegan translate", ["--run", "{w}/run_empty", "--in", "{ds}", "--out", "{w}/out/t"], "run_empty"),
    ("cyclegan translate", ["--run", "{w}/run_truncated", "--in", M, "--out", "{w}/out/t"], "no/such/thing"),
    ("cyclegan translate", ["--run", "{w}/run_truncated", "--in", "{ds}", "--out", "{w}/out/t",
                            "--direction", "up"], "up"),
    ("cyclegan translate", ["--run", "{w}/run_truncated", "--in", "{w}/corrupt.webm", "--out", U + ".webm"],
     "checkpoint"),
    ("cyclegan eval", ["--run", "{w}/run_truncated", "--sim", "{ds}", "--real", "{ds}"], "checkpoint"),
    ("cyclegan eval", ["--run", "{w}/run_truncated", "--sim", M, "--real", "{ds}"], "no/such/thing"),
    ("cyclegan eval", ["--run", "{w}/run_truncated", "--sim", "{ds}", "--real", "{ds}", "--holdout", "1.5"],
     "holdout"),
    ("sim2real eval", ["--run", M, "--sim", "{ds}", "--real", "{ds}"], "no/such/thing"),
    ("sim2real eval", ["--run", "{w}/run_text", "--sim", "{ds}", "--real", "{ds}"], "checkpoint"),
    ("sim2real eval", ["--run", "{w}/run_text", "--sim", "{ds}", "--real", "{w}/imgs"], "checkpoint"),
    ("sim2real eval", ["--run", "{w}/run_text", "--sim", "{ds}", "--real", "{ds}", "--holdout", "0"], "holdout"),
    # --- diffusion
    ("diffusion train", ["--data", M, "--out", "{w}/out/d", "--steps", "1"], "no/such/thing"),
    ("diffusion train", ["--data", F, "--out", "{w}/out/d", "--steps", "1"], "file.txt"),
    ("diffusion train", ["--data", "{w}/ds_bad_manifest", "--out", "{w}/out/d", "--steps", "1"], "manifest"),
    ("diffusion train", ["--data", "{ds}", "--out", U, "--steps", "1", "--size", "16", "--model", "tiny"],
     "file.txt"),
    ("diffusion train", [*DT, "--model", "huge"], "huge"),
    ("diffusion train", [*DT, "--cond", "mood"], "mood"),
    ("diffusion train", [*DT, "--lr", "0"], "lr"),
    ("diffusion train", [*DT, "--guidance-dropout", "1.5"], "guidance"),
    ("diffusion train", [*DT, "--latent", "--vae", M], "no/such/thing"),
    ("diffusion train", [*DT, "--cond", "class,text"], "text"),
    ("diffusion train", [*DT, "--cond", "text", "--text-steps", "0"], "--text-steps"),
    ("diffusion sample", ["--run", M, "--out", "{w}/out/ds", "--prompt", "a red cube"], "no/such/thing"),
    ("diffusion sample", ["--run", M, "--out", "{w}/out/ds"], "no/such/thing"),
    ("diffusion sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/ds"], "checkpoint"),
    ("diffusion sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/ds", "--sampler", "euler9"], "euler9"),
    ("diffusion sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/ds", "--steps", "0"], "steps"),
    ("diffusion sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/ds", "--n", "0"], "--n"),
    ("diffusion sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/ds", "--side-margin", "0.5"], "side-margin"),
    ("stackgan train", ["--data", M, "--out", "{w}/out/sg", "--steps", "1"], "no/such/thing"),
    ("stackgan train", ["--data", "{w}/imgs", "--out", "{w}/out/sg", "--steps", "1"], "manifest"),
    ("stackgan train", ["--data", "{ds}", "--out", "{w}/out/sg", "--steps", "1", "--size", "48"], "--size"),
    ("stackgan train", ["--data", "{ds}", "--out", "{w}/out/sg", "--steps", "1", "--kl-weight", "-1"], "kl-weight"),
    ("stackgan train", ["--data", "{ds}", "--out", "{w}/out/sg", "--steps", "1", "--text-steps", "0"], "text-steps"),
    ("stackgan train", ["--data", "{ds}", "--out", "{w}/out/sg", "--steps", "1", "--aux-class", "-1"], "aux-class"),
    ("stackgan train", ["--data", "{ds}", "--out", "{w}/out/sg", "--steps", "1", "--no-layout", "--aux-class", "1"],
     "aux-class"),
    ("stackgan train", ["--data", "{ds}", "--out", U, "--steps", "1", "--size", "16", "--text-steps", "1"],
     "file.txt"),
    ("stackgan sample", ["--run", M, "--out", "{w}/out/sgs", "--prompt", "a red cube"], "no/such/thing"),
    ("stackgan sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/sgs"], "checkpoint"),
    ("stackgan sample", ["--run", "{w}/run_empty", "--out", "{w}/out/sgs"], "checkpoint"),
    ("stackgan sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/sgs", "--n", "0"], "--n"),
    ("stackgan sample", ["--run", "{w}/run_truncated", "--out", "{w}/out/sgs", "--side-margin", "-1"], "side-margin"),
    ("stackgan eval", ["--run", "{w}/run_truncated", "--data", M], "no/such/thing"),
    ("stackgan eval", ["--run", "{w}/run_truncated", "--data", "{w}/imgs"], "imgs"),
    ("stackgan eval", ["--run", "{w}/run_truncated", "--data", "{ds}"], "checkpoint"),
    ("stackgan eval", ["--run", "{w}/run_truncated", "--data", "{ds}", "--n", "1"], "--n"),
    ("stackgan eval", ["--run", "{w}/run_truncated", "--data", "{ds}", "--side-margin", "nan"], "side-margin"),
    ("diffusion eval", ["--run", "{w}/run_truncated", "--data", M], "no/such/thing"),
    ("diffusion eval", ["--run", "{w}/run_truncated", "--data", "{w}/imgs"], "imgs"),
    ("diffusion eval", ["--run", "{w}/run_truncated", "--data", "{ds}"], "checkpoint"),
    ("diffusion eval", ["--run", "{w}/run_truncated", "--data", "{ds}", "--side-margin", "0.2"], "side-margin"),
    # --- train / evaluate
    ("train", ["--algo", "sac", "--env", "ReachNowhere-v0", "-f", "{w}/out/rl"], "ReachNowhere"),
    ("train", ["--algo", "dqn", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl"], "dqn"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--env-kwargs", "robot:arm9"],
     "arm9"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--env-kwargs", "speed"],
     "speed"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--env-kwargs", "nope:1"],
     "nope"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--hyperparams",
               "learning_rate:-1"], "learning_rate"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--hyperparams", "gamma:7"],
     "gamma"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--n-timesteps", "-5"],
     "timesteps"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--n-envs", "0"], "n-envs"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--time-limit", "0"], "time-limit"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", U, "--n-timesteps", "10"], "file.txt"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", F, "--n-timesteps", "10"], "file.txt"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl", "--resume"], "config.yml"),
    ("evaluate", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", M], "no/such/thing"),
    ("evaluate", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl"], "config.yml"),
    ("evaluate", ["--algo", "ppo", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl"], "model.zip"),
    ("evaluate", ["--algo", "ppo", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl", "--exp-id", "9"], "9"),
    ("evaluate", ["--algo", "ppo", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl", "--contexts", "0"], "contexts"),
    ("evaluate", ["--algo", "a2c", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl"], "a2c"),
    ("evaluate", ["--algo", "ppo", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl", "--exp-id", "1,x"], "--exp-id"),
    ("evaluate", ["--algo", "ppo", "--env", "ReachSignalFixed-v0", "-f", "{w}/rl", "--exp-id", "7*"], "7*"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--hyperparams-file", M],
     "no/such/thing"),
    ("train", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/rl", "--hyperparams-file", F],
     "file.txt"),
    # --- tune
    ("tune", ["--algo", "dqn", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune"], "dqn"),
    ("tune", ["--algo", "sac", "--env", "ReachNowhere-v0", "-f", "{w}/out/tune"], "ReachNowhere"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--storage", "ftp://x/y"],
     "storage"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--storage",
              "postgresql://nobody@127.0.0.1:1/none"], "storage"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--n-trials", "0"], "n-trials"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--n-jobs", "0"], "n-jobs"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--n-timesteps", "-3"],
     "n-timesteps"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--sampler", "grid"], "grid"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--pruner", "hyperband"],
     "hyperband"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--eval-freq", "0"],
     "eval-freq"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--env-kwargs", "nope:1"],
     "nope"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", F], "file.txt"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--hyperparams-out", U],
     "file.txt"),
    ("tune", ["--algo", "sac", "--env", "ReachSignalFixed-v0", "-f", "{w}/out/tune", "--study-name", "a/b"],
     "study-name"),
    # --- render / compare / demo
    ("render", ["--random", "--out", U + ".webm"], "file.txt"),
    ("render", ["--random", "--out", "{w}/out/x.avi"], ".avi"),
    ("render", ["--random", "--out", "{w}/out/x.webm", "--robot", "arm9"], "arm9"),
    ("render", ["--random", "--out", "{w}/out/x.webm", "--env", "ReachNowhere-v0"], "ReachNowhere"),
    ("render", ["--random", "--out", "{w}/out/x.webm", "--camera", "ceiling"], "ceiling"),
    ("render", ["--random", "--out", "{w}/out/x.webm", "--size", "2x2"], "size"),
    ("render", ["--random", "--out", "{w}/out/x.webm", "--episodes", "0"], "episodes"),
    ("render", ["--run", M, "--out", "{w}/out/x.webm"], "no/such/thing"),
    ("render", ["--run", "{w}/rl/ppo/ReachSignalFixed-v0_1", "--out", "{w}/out/x.webm"], "model.zip"),
    ("compare", ["--out", F, "--quick"], "file.txt"),
    ("compare", ["--out", "{w}/out/c", "--robot", "arm9", "--quick"], "arm9"),
    ("compare", ["--out", "{w}/out/c", "--stages", "fixed,flying", "--quick"], "flying"),
    ("compare", ["--out", "{w}/out/c", "--rl-algos", "dqn", "--quick"], "dqn"),
    ("compare", ["--out", "{w}/out/c", "--cmaes-budgets", "0", "--quick"], "cmaes"),
    ("compare", ["--out", "{w}/out/c", "--seeds", "0", "--quick"], "seeds"),
    ("demo", ["--out", F], "file.txt"),
    ("demo", ["--out", U], "file.txt"),
    ("demo", ["--out", "{w}/out/demo", "--threads", "-2"], "threads"),
    # --- benchmarks that take inputs
    ("bench env", ["--robot", "arm9"], "arm9"),
    ("bench env", ["--episodes", "0"], "episodes"),
    ("bench feasibility", ["--robot", "arm9"], "arm9"),
    ("bench feasibility", ["--stages", "flying"], "flying"),
    ("bench feasibility", ["--contexts", "0"], "contexts"),
    ("bench rl", ["--stage", "flying", "--out", "{w}/out/brl"], "flying"),
    ("bench rl", ["--seeds", "0", "--out", "{w}/out/brl"], "seeds"),
    ("bench rl", ["--budget-s", "-1", "--out", "{w}/out/brl"], "budget"),
    ("bench rl", ["--algos", "dqn", "--out", "{w}/out/brl"], "dqn"),
    ("bench rl", ["--out", F], "file.txt"),
    ("bench dataset", ["--dir", F], "file.txt"),
    ("bench dataset", ["--frames", "0"], "frames"),
    ("bench dataset", ["--format", "tar"], "--format"),
    ("bench dataset", ["--format", "both", "--read-frames", "5"], "--read-frames"),
    ("bench gan", ["--data", M, "--out", "{w}/out/bg"], "no/such/thing"),
    ("bench gan", ["--data", "{ds}", "--out", U], "file.txt"),
    ("bench cyclegan", ["--out", F], "file.txt"),
    ("bench cyclegan", ["--out", U], "file.txt"),
    ("bench cyclegan", ["--out", "{w}/out/bc", "--steps", "0"], "steps"),
    ("bench sim2real", ["--out", F, "--quick"], "file.txt"),
    ("bench sim2real", ["--out", "{w}/out/bs", "--quick", "--n-few", "0"], "--n-few"),
    ("bench sim2real", ["--out", "{w}/out/bs", "--quick", "--fda-beta", "0.7"], "--fda-beta"),
    ("bench sim2real", ["--out", "{w}/out/bs", "--quick", "--steps", "0"], "--steps"),
    ("bench tune", ["--trials", "0"], "--trials"),
    ("bench tune", ["--n-timesteps", "0"], "--n-timesteps"),
    ("bench tune", ["--storage", "sqlite:///x.db"], "--storage"),
    ("bench tune", ["--algo", "dqn"], "dqn"),
    ("bench diffusion", ["--data", M, "--out", "{w}/out/bd"], "no/such/thing"),
    ("bench diffusion", ["--data", "{ds}", "--out", "{w}/out/bd", "--test", "500"], "--test"),
    ("bench diffusion", ["--data", "{ds}", "--out", "{w}/out/bd", "--test", "4", "--model", "huge"], "huge"),
]


def _fill(args: list[str], world: Path) -> list[str]:
    return [a.format(w=world, ds=world / "ds") for a in args]


@pytest.mark.parametrize("command,args,word", CASES,
                         ids=[f"{c.replace(' ', '-')}:{' '.join(a)[:60]}" for c, a, _ in CASES])
def test_bad_input_is_one_sentence_exit_2_and_touches_nothing(world, capsys, command, args, word):
    argv = [*command.split(), *_fill(args, world)]
    before = tree_hash(world)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code} for armlab {' '.join(argv)}\n{err[-3000:]}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("armlab: error: "), err
    assert "Traceback" not in err
    assert word.lower() in lines[0].lower(), f"{word!r} not named in {lines[0]!r}"
    assert tree_hash(world) == before, f"armlab {' '.join(argv)} changed the files under {world}"


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple = ()) -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [" ".join(prefix)]
    return [c for name, p in subs[0].choices.items() for c in _leaf_commands(p, (*prefix, name))]


#: commands without inputs to get wrong, and the GPU checks (their own tests: test_gan, test_cyclegan, ...)
NO_INPUTS = {"envs", "bench gpu-generative", "bench gpu-diffusion"}


def test_the_matrix_covers_every_subcommand():
    covered = {c for c, _, _ in CASES}
    assert set(_leaf_commands(build_parser())) - NO_INPUTS <= covered
    counts = {c: sum(1 for d, _, _ in CASES if d == c) for c in sorted(covered)}
    assert min(counts.values()) >= 2, counts
    print(json.dumps(counts))
