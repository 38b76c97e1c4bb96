"""The docs run as pasted (issue 22): every shell block of docs/getting-started.md and
docs/sweeps.md, and the Python block of the sweeps page, run in a temporary folder that
holds what a fresh clone has beside them (a copy of examples/).

Two kinds of line are the machine's set-up, which CI performs itself before the tests (it
runs exactly the README's test command): `pip install ...` (alone, or as the `pip install
... &&` prefix of the first command, whose rest is run here), and the test command itself
(`python -m pytest`), which would run this suite inside itself. Every other line runs."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("getting-started.md", "sweeps.md")


def blocks(page: str, lang: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def runnable(block: str) -> str:
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        s = line.strip()
        if s.startswith("pip install"):
            if "&&" not in s:
                continue                   # set-up alone
            s = s.split("&&", 1)[1].strip()
        if "python -m pytest" in s:
            continue                       # the suite itself: CI runs it
        lines.append(s)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples", folder / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", "sweep-results*", "*.parts"))
    return folder


ALL = [(page, i, b) for page in PAGES for i, b in enumerate(blocks(page, "sh"))]
CASES = [c for c in ALL if runnable(c[2])]


def test_only_set_up_blocks_are_left_out():
    """The blocks with nothing to run are the machine's set-up, which CI performs (the
    user install line, and the README's test command)."""
    left = [b for _, _, b in ALL if not runnable(b)]
    assert 1 <= len(left) <= 2
    for b in left:
        assert all(line.startswith("pip install") for line in b.strip().splitlines())


@pytest.mark.parametrize("page,index,block", CASES, ids=[f"{p}-sh{i}" for p, i, _ in CASES])
def test_shell_block_runs_verbatim(page, index, block, clone):
    script = runnable(block)
    env = dict(os.environ, PYTHONPATH="", MPLBACKEND="Agg")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=clone, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{page} block {index} failed:\n{script}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def test_sweeps_python_block_runs(clone):
    (code,) = blocks("sweeps.md", "python")
    r = subprocess.run([sys.executable, "-c", code], cwd=clone, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYTHONPATH=""))
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_sweep_file_shown_is_the_one_shipped():
    (shown,) = blocks("sweeps.md", "toml")
    shipped = (ROOT / "examples" / "sweep" / "sweep.toml").read_text(encoding="utf-8")
    assert tomllib.loads(shown) == tomllib.loads(shipped)


def test_the_example_sweep_runs_from_another_directory(tmp_path):
    """Paths in a sweep file are relative to it: run from elsewhere, it still finds
    models.py (issue 22, item 5)."""
    from conftest import run_cli

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = run_cli("sweep", str(ROOT / "examples" / "sweep" / "sweep.toml"), "-o",
                    str(tmp_path / "out"), "--jobs", "1", "-q", "--no-cache")
    finally:
        os.chdir(here)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.csv").read_text().count("\n") == 65     # header + 64 points
