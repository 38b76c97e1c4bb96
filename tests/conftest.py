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
