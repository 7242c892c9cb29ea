"""Every code block of README.md runs as written (issue 22).

Blocks are read from README.md at test time, so an edit of the README is tested as it stands.
Each block is one of these kinds (a block of no known kind fails ``test_every_block_is_tested``):

- ```` ```python ````: run verbatim in an empty folder (fast: the example is sized for a first
  try on a laptop).
- a shell block of ``scalevae ...`` lines: run in order in one empty folder as
  ``python -m scalevae ...`` (slow: a real PFM run and a demo). ``torchrun ... -m scalevae``
  lines run as ``python -m torch.distributed.run ...`` (slow).
- ``make ...`` lines are the Makefile's own targets (``make test`` is this suite) and the Slurm
  block needs a cluster: listed, not run.

The only substitutions (paths, never options): ``../shared/data/real/`` becomes the real data
folder beside the repository (the test is skipped without it), the ``scalevae`` and ``torchrun``
commands become this interpreter's modules, and ``movie.npy``, which the README names as the
reader's own file, is made by the test (a small synthetic graphene movie).
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REAL_PREFIX = "../shared/data/real/"


def blocks():
    """(language, text) of every fenced code block of README.md, in order."""
    return [(m.group(1), m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```$", README.read_text(), re.M | re.S)]


def commands(text):
    """The shell commands of a block: continuation lines joined, comments stripped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def kind(lang, text):
    cmds = commands(text)
    if lang == "python":
        return "python"
    if cmds and all(c.startswith("scalevae ") for c in cmds):
        return "cli"
    if cmds and all(c.startswith("torchrun ") for c in cmds):
        return "torchrun"
    if cmds and all(c.startswith("make ") for c in cmds):
        return "make"
    if "#SBATCH" in text:
        return "slurm"
    return None


def of_kind(name):
    return [text for lang, text in blocks() if kind(lang, text) == name]


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")]))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _shell(cmd, real_data, cwd):
    """Run one README command with the documented substitutions; fail with its stderr."""
    argv = shlex.split(cmd.replace(REAL_PREFIX, f"{real_data}/"))
    head = {"scalevae": [sys.executable, "-m", "scalevae"],
            "torchrun": [sys.executable, "-m", "torch.distributed.run"]}[argv[0]]
    done = subprocess.run(head + argv[1:], cwd=cwd, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}\n{done.stderr[-3000:]}"
    return done


def test_every_block_is_tested():
    found = [kind(lang, text) for lang, text in blocks()]
    assert None not in found, [text for (lang, text), k in zip(blocks(), found) if k is None]
    assert {"python", "cli"} <= set(found)


@pytest.mark.parametrize("index", range(len(of_kind("python"))))
def test_python_block_runs_verbatim(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = of_kind("python")[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})


@pytest.mark.slow
def test_command_line_block_runs(real_data, tmp_path):
    for text in of_kind("cli"):
        for cmd in commands(text):
            _shell(cmd, real_data, tmp_path)
    assert (tmp_path / "runs" / "pto" / "report.html").is_file()
    assert (tmp_path / "runs" / "pto-other" / "result.nc").is_file()


@pytest.mark.slow
def test_torchrun_block_runs(tmp_path):
    from scalevae.datasets import graphene_movie

    import numpy as np

    np.save(tmp_path / "movie.npy", graphene_movie(n_frames=2, shape=(96, 96), seed=0).images)
    for text in of_kind("torchrun"):
        for cmd in commands(text):
            _shell(cmd, ROOT, tmp_path)
    assert (tmp_path / "run" / "result.nc").is_file()
