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


class CliResult:
    """What a command printed and returned (the fields of subprocess.CompletedProcess)."""

    def __init__(self, args, returncode, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr


def run_cli(*args, stdin=None, cwd=None, script="fodlam", env=None, isolated=False):
    """Run a console script as a user would: in this process (``main(argv)`` with the
    standard streams, the working directory and the import path swapped and restored), or
    in a subprocess when ``isolated`` or an ``env`` is asked for (a fresh interpreter:
    worker pools, signals, start-up imports, environment variables)."""
    if isolated or env:
        return _run_cli_subprocess(*args, stdin=stdin, cwd=cwd, script=script, env=env)
    import contextlib
    import io

    from fodlam import cli

    fn = cli.main if script == "fodlam" else cli.onnx_main
    out, err = io.StringIO(), io.StringIO()
    saved = (os.getcwd(), sys.stdin, list(sys.path), set(sys.modules), os.environ.pop("FODLAM_DEBUG", None))
    os.chdir(cwd or ROOT)
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = fn(list(args))
            except SystemExit as e:  # argparse's --help / --version
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(saved[0])
        sys.stdin = saved[1]
        sys.path[:] = saved[2]
        # forget exactly the user model files the command imported from the test's own
        # temporary folders (so the next test may write another file of the same name);
        # never a library's or the checkout's module, wherever they live
        base = _TEST_TMP[0]
        for name in set(sys.modules) - saved[3]:
            path = getattr(sys.modules[name], "__file__", None) or ""
            if base and path.startswith(base):
                del sys.modules[name]
        if saved[4] is not None:
            os.environ["FODLAM_DEBUG"] = saved[4]
    return CliResult(list(args), rc, out.getvalue(), err.getvalue())


def _run_cli_subprocess(*args, stdin=None, cwd=None, script="fodlam", env=None):
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


#: the root of this run's tmp_path folders (set when the session starts)
_TEST_TMP: list = [None]


def pytest_sessionstart(session):
    session.config._fodlam_git_status = _git_status()
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        _TEST_TMP[0] = str(factory.getbasetemp().resolve()) + os.sep


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
