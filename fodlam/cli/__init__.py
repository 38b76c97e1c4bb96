"""Command line: thin argument parsing over the API; it parses and prints, and the layer
that owns each decision makes it. Errors: one line, the exit code of their kind.

* ``common``: the one-line-error parser, output to a file or stdout, shared flags;
* ``commands``: the bodies of run, diagnose, profiles, onnx, torch, llm, check, report,
  calibrate;
* ``sweep``: the body of ``fodlam sweep`` (and sweep reports);
* ``parser``: ``build_parser``, sub-commands bound to their bodies;
* this file: the entry points ``main`` (``fodlam``) and ``onnx_main`` (``fodlam-onnx``),
  behind ``_guard``: no traceback ever reaches the user.

Nothing here imports torch or onnx at module import time.
"""

from __future__ import annotations

import os
import sys

from .. import __version__
from ..errors import FodlamError
from .commands import cmd_onnx
from .common import _Parser, add_onnx_args, render
from .parser import build_parser
from .sweep import CSV_LIMIT

__all__ = ["main", "onnx_main", "build_parser", "render", "CSV_LIMIT"]


def _guard(fn) -> int:
    try:
        return fn()
    except FodlamError as e:
        print(f"fodlam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fodlam: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except RecursionError:
        print("fodlam: error: the model is nested too deeply to process", file=sys.stderr)
        return 2
    except MemoryError:
        print("fodlam: error: out of memory while processing the model", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback
        if os.environ.get("FODLAM_DEBUG"):
            raise
        msg = " ".join(str(e).split())[:300]
        print(f"fodlam: internal error: {type(e).__name__}: {msg} (set FODLAM_DEBUG=1 for "
              "a traceback, and please report it)", file=sys.stderr)
        return 3


def main(argv=None) -> int:
    def go():
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    return _guard(go)


def onnx_main(argv=None) -> int:
    def go():
        parser = _Parser(prog="fodlam-onnx", description=(
            "Profile an ONNX model: per-node energy (J) and latency (s) on an accelerator."))
        parser.add_argument("--version", action="version", version=f"fodlam {__version__}")
        add_onnx_args(parser)
        return cmd_onnx(parser.parse_args(argv))
    return _guard(go)
