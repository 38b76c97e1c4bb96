import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "reference" / "published"
EXAMPLES = ROOT / "examples"
if str(ROOT) not in sys.path:  # tests import the model zoo as examples.zoo
    sys.path.insert(0, str(ROOT))


def run_cli(*args, stdin=None, cwd=None, script="fodlam", env=None):
    """Run a console script in a subprocess, as a user would."""
    module = "fodlam.cli"
    fn = "main" if script == "fodlam" else "onnx_main"
    cmd = [sys.executable, "-c", f"import sys; from {module} import {fn}; sys.exit({fn}())", *args]
    full_env = dict(os.environ)
    full_env.pop("FODLAM_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=cwd or ROOT,
                          env=full_env, timeout=300)


@pytest.fixture
def cli():
    return run_cli


# ---- the suite leaves the work tree as it found it ---------------------------------------

def _git_status() -> set[str] | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


def pytest_sessionstart(session):
    session.config._fodlam_git_status = _git_status()


def pytest_sessionfinish(session, exitstatus):
    """Tests write only under tmp_path: a file the run added or changed in the work tree
    (model debris, external data, caches not in .gitignore) fails the session."""
    before = getattr(session.config, "_fodlam_git_status", None)
    after = _git_status()
    if before is None or after is None:
        return
    new = sorted(after - before)
    if new:
        sys.stderr.write("\nthe test run changed the work tree (tests must write under tmp_path):\n"
                         + "\n".join(f"  {line}" for line in new) + "\n")
        session.exitstatus = 1
