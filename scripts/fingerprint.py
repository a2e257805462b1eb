"""Same seed, same bytes: fingerprint armlab's seeded outputs, to check that a refactor changes no result.

    python -m armlab_scripts.fingerprint --out before.json            # on the old code
    python -m armlab_scripts.fingerprint --out after.json --compare before.json

It runs, in a fixed folder, the real ``armlab`` commands with tiny budgets and hashes what they write:
a ``sim`` and a ``real`` dataset (every file), a conditional GAN, a CycleGAN, a pixel and a latent
diffusion run of a few steps (every tensor in their checkpoints and the sample grid), a seeded SAC
run on an open-loop env and a residual SAC run (every policy parameter and the replay buffer), and a
random-controller video. Files that record wall time (TensorBoard events, logs, summaries) are left out.
``--compare`` prints each entry as ``same`` or ``DIFFERENT`` and exits 1 if any differ.

``--datasets-from DIR`` copies the two datasets from an earlier run's folder instead of rendering them, so the
models of two versions of armlab can be compared on the very same data even where the dataset format itself
changed (the GAN and diffusion configs record the dataset manifest's checksum).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

WORK = Path(os.environ.get("ARMLAB_FINGERPRINT_DIR", "/tmp/armlab-fingerprint"))
SMALL = ["--threads", "1", "--no-progress", "--sample-every", "3", "--checkpoint-every", "3"]

COMMANDS: list[tuple[str, list[str]]] = [
    ("dataset-sim", ["dataset", "generate", "--out", "sim", "--n", "8", "--size", "64", "--seed", "3",
                     "--style", "sim"]),
    ("dataset-real", ["dataset", "generate", "--out", "real", "--n", "8", "--size", "64", "--seed", "3",
                      "--style", "real"]),
    ("gan", ["gan", "train", "--data", "sim", "--out", "gan", "--steps", "3", "--cond", "class,target",
             "--size", "32", "--batch-size", "4", "--seed", "0", *SMALL]),
    ("cyclegan", ["cyclegan", "train", "--sim", "sim", "--real", "real", "--out", "cg", "--steps", "3",
                  "--size", "32", "--batch-size", "2", "--seed", "0", "--base", "8", "--d-base", "8",
                  "--n-blocks", "1", *SMALL]),
    ("diffusion", ["diffusion", "train", "--data", "sim", "--out", "df", "--steps", "3", "--cond",
                   "class,target", "--size", "32", "--batch-size", "4", "--seed", "0", *SMALL]),
    ("latent-diffusion", ["diffusion", "train", "--data", "sim", "--out", "ldf", "--latent", "--vae-steps", "3",
                          "--steps", "3", "--cond", "class", "--size", "32", "--batch-size", "4", "--seed", "0",
                          *SMALL]),
    ("sac", ["train", "--algo", "sac", "--env", "armlab/ReachSignalVelocity-v0", "--n-timesteps", "300",
             "--hyperparams", "learning_starts:100", "-f", "rl", "--seed", "0", "--threads", "1", "--no-progress",
             "--eval-freq", "0"]),
    ("sac-residual", ["train", "--algo", "sac", "--env", "armlab/ReachState-v0", "--env-kwargs", "robot:arm3",
                      "history:true", "residual:true", "reward_at:end", "--hyperparams", "learning_starts:50",
                      "residual_her:true", "--n-timesteps", "200", "-f", "rlres", "--seed", "0", "--threads", "1",
                      "--no-progress", "--eval-freq", "0"]),
    ("render", ["render", "--random", "--env", "armlab/ReachVelocity-v0", "--episodes", "1", "--size", "96x72",
                "--out", "random.gif", "--seed", "0"]),
]
OUTPUTS = {"dataset-sim": "sim", "dataset-real": "real", "gan": "gan", "cyclegan": "cg", "diffusion": "df",
           "latent-diffusion": "ldf", "sac": "rl", "sac-residual": "rlres", "render": "random.gif"}
SKIP_PARTS = {"tb"}
SKIP_NAMES = {"log.csv", "summary.json"}


def _tensors_digest(obj, h) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        h.update(obj.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _tensors_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _tensors_digest(v, h)
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        h.update(repr(obj).encode())


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.suffix == ".pt":
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("elapsed", "wall_time", "time", "seconds"):
            if isinstance(state, dict):
                state.pop(key, None)
        _tensors_digest(state, h)
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            for name in sorted(z.namelist()):
                if name.endswith(".pth"):
                    import torch

                    _tensors_digest(torch.load(io.BytesIO(z.read(name)), map_location="cpu", weights_only=True), h)
    elif path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            for name in sorted(z.files):
                h.update(name.encode())
                h.update(np.ascontiguousarray(z[name]).tobytes())
    elif path.suffix in (".yml", ".yaml"):
        import yaml

        config = yaml.safe_load(path.read_text())
        config.pop("created", None)  # the run's wall-clock start
        h.update(json.dumps(config, sort_keys=True).encode())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(path: Path) -> dict[str, str]:
    if path.is_file():
        return {path.name: _file_digest(path)}
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if not p.is_file() or SKIP_PARTS & set(rel.parts) or p.name in SKIP_NAMES:
            continue
        out[str(rel)] = _file_digest(p)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="write the fingerprints here (JSON)")
    parser.add_argument("--compare", help="fingerprints of an earlier run to compare with")
    parser.add_argument("--only", help="comma list of entries to run (default: all)")
    parser.add_argument("--datasets-from", help="copy sim/ and real/ from this folder instead of rendering them")
    args = parser.parse_args(argv)
    beside = Path(sys.executable).with_name("armlab")  # the armlab of this interpreter's environment
    armlab = str(beside) if beside.is_file() else shutil.which("armlab")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    if args.datasets_from:
        for name in ("sim", "real"):
            shutil.copytree(Path(args.datasets_from) / name, WORK / name)
    only = set(args.only.split(",")) if args.only else None
    result = {}
    for name, cmd in COMMANDS:
        if (only and name not in only) or (args.datasets_from and name.startswith("dataset-")):
            continue
        proc = subprocess.run([armlab, *cmd], cwd=WORK, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        result[name] = fingerprint(WORK / OUTPUTS[name])
        print(f"{name}: {len(result[name])} files", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    if not args.compare:
        return 0
    before = json.loads(Path(args.compare).read_text())
    differ = 0
    for name in result:
        a, b = before.get(name, {}), result[name]
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        differ += bool(changed)
        print(f"{name:18s} {'same' if not changed else 'DIFFERENT: ' + ', '.join(changed[:8])}"
              f"  ({len(b)} files)")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
