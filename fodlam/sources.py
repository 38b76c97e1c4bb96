"""Model references: "which model, which importer, which shapes", parsed once.

Every way of naming a model goes through here: the command line (``fodlam torch
MODULE:FACTORY --input-shape ...``, ``fodlam-onnx FILE --dim ...``, ``fodlam report
TARGET``), budget files (``fodlam check``), sweep files (``fodlam sweep``) and the Python
API. A ``ModelRef`` is frozen data; ``load()`` runs the importer it names and returns an
``Imported`` (nodes, network, warnings, batch) — never a cost.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, InputError
from .nodes import Imported

KINDS = ("onnx", "torch", "config2017")


def parse_shape(value, where: str, error=InputError) -> tuple[int, ...]:
    """One shape, written ``1,3,224,224`` (or ``1x3x224x224``) on a command line or
    ``[1, 3, 224, 224]`` in a file: positive integers, else a one-line ``error``."""
    if isinstance(value, str):
        try:
            dims = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
        except ValueError:
            raise error(f"{where} {value!r}: a shape is comma-separated integers, e.g. 1,3,224,224") from None
        if not dims or any(d <= 0 for d in dims):
            raise error(f"{where} {value!r}: every dimension must be a positive integer")
        return dims
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value):
        raise error(f"{where}: a shape is a list of positive integers, e.g. [1, 3, 224, 224]")
    return tuple(value)


def parse_shapes(value, where: str, error=InputError) -> tuple[tuple[int, ...], ...]:
    """One shape or a list of shapes (a model with several inputs)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, (list, tuple)) for s in value):
        return tuple(parse_shape(s, where, error) for s in value)
    return (parse_shape(value, where, error),)


def parse_positive_int(value, where: str, error=InputError) -> int:
    """A positive integer, given as a number (not a bool) or, on a command line, as text."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise error(f"{where}: the value must be an integer") from None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise error(f"{where}: must be a positive integer, got {value!r}")
    return value


def parse_assignments(values, what: str, flag: str) -> dict:
    """``NAME=VALUE`` command-line arguments as a dict."""
    out = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise InputError(f"{flag} {text!r}: expected NAME={what}")
        out[name] = value
    return out


def regular_file(path, what: str = "model file") -> None:
    """A one-line error unless ``path`` is a regular file: a FIFO, a device such as
    /dev/zero or a folder would hang or mislead whatever reads it."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{what} {path} not found") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a pipe, socket or device"
        raise InputError(f"{what} {path} is {kind}, not a regular file; give the path of a file")


def _dims(value, where: str, error=ConfigError) -> tuple:
    if not isinstance(value, dict):
        raise error(f"{where}: dims must be a table of positive integers, e.g. {{ batch = 1 }}")
    return tuple(sorted((str(k), parse_positive_int(v, f"{where} dims.{k}", error))
                        for k, v in value.items()))


@dataclass(frozen=True)
class ModelRef:
    """A model to import: ``kind`` ("onnx", "torch" or "config2017"), ``source`` (a file
    path, or ``PACKAGE.MODULE:FACTORY`` / ``/abs/path/file.py:FACTORY``), the ``name`` it is
    reported under, and what its importer needs: torch ``input_shapes`` (one per input),
    ONNX ``onnx_shapes`` (``((input, shape), ...)``) and ``dims`` (``((symbol, value),
    ...)``), and a ``batch`` that overrides the leading dimension."""

    kind: str
    source: str
    name: str
    input_shapes: tuple = ()
    onnx_shapes: tuple = ()
    dims: tuple = ()
    batch: int | None = None
    base_dir: str | None = None        # a file's folder: put on sys.path for MODULE:FACTORY
    #: an LLM generation instead of one forward: ((prompt_len, P), (new_tokens, N),
    #: (samples, K), (cache, "dynamic"|"static")), sweeps' ``llm = {...}`` (fodlam/llm.py)
    llm: tuple = ()

    # ---- parsing --------------------------------------------------------------------
    @classmethod
    def parse(cls, target: str, *, input_shapes=(), dims=None, batch=None) -> "ModelRef":
        """A command-line target: an ``.onnx`` file, a 2017 config ``.json``, or
        ``PACKAGE.MODULE:FACTORY`` / ``FILE.py:FACTORY`` with ``--input-shape`` values
        (``1,3,224,224`` for torch; ``NAME=1,3,224,224`` for ONNX)."""
        target = str(target)
        dims = tuple(sorted((dims or {}).items()))
        if target.endswith(".json"):
            return cls("config2017", target, Path(target).stem)
        if target.endswith(".onnx") or (Path(target).is_file() and ":" not in target):
            return cls.onnx(target, input_shapes=input_shapes, dims=dict(dims), batch=batch)
        if ":" in target:
            shapes = tuple(parse_shape(s, "--input-shape") for s in input_shapes)
            return cls("torch", target, target, input_shapes=shapes, batch=batch)
        raise InputError(f"'{target}' is neither an .onnx file, a 2017 config .json, nor a "
                         "PACKAGE.MODULE:FACTORY")

    @classmethod
    def onnx(cls, path, *, input_shapes=(), dims=None, batch=None) -> "ModelRef":
        """An ONNX file with ``--input-shape NAME=D0,D1,...`` strings (or a ``{name:
        shape}`` mapping) and ``{symbol: value}`` dims."""
        if isinstance(input_shapes, dict):
            shapes = tuple((k, parse_shape(v, f"input shape {k}")) for k, v in input_shapes.items())
        else:
            shapes = tuple((k, parse_shape(v, "--input-shape")) for k, v in
                           parse_assignments(input_shapes, "D0,D1,...", "--input-shape").items())
        return cls("onnx", str(path), Path(str(path)).stem, onnx_shapes=shapes,
                   dims=tuple(sorted((dims or {}).items())), batch=batch)

    @classmethod
    def from_table(cls, entry: dict, where: str, base: Path, *, extra_keys=(), globs: bool = False,
                   short_names: bool = False) -> list["ModelRef"]:
        """The model(s) a ``[[models]]`` table of a budget or sweep file names. Paths are
        relative to the file's folder ``base``; ``FILE.py:FACTORY`` too, and ``base`` is put
        on the import path for ``MODULE:FACTORY``. ``globs``: an ONNX pattern may name
        several files; ``short_names``: an unnamed model is called after its file's stem or
        its factory, rather than the reference as written. ``extra_keys``: what else the table may hold."""
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        kinds = [k for k in ("onnx", "torch") if k in entry]
        if len(kinds) != 1:
            raise ConfigError(f"{where}: give exactly one of onnx = \"file.onnx\" or "
                              "torch = \"module:factory\"")
        known = {"name", "onnx", "torch", "input_shape", "input_shapes", "dims", "batch", *extra_keys}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(known))}")
        name = entry.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"{where}: name must be a non-empty string")
        batch = None
        if "batch" in entry:
            batch = parse_positive_int(entry["batch"], f"{where}: batch", ConfigError)
        dims = _dims(entry.get("dims", {}), where)
        base = Path(base)
        if "onnx" in entry:
            pattern = entry["onnx"]
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{where}: onnx must be a file path")
            shapes = entry.get("input_shapes", {})
            if not isinstance(shapes, dict):
                raise ConfigError(f"{where}: for an ONNX model input_shapes is a table "
                                  "{ input_name = [1, 3, 224, 224] }")
            onnx_shapes = tuple((k, parse_shape(v, f"{where} input_shapes.{k}", ConfigError))
                                for k, v in shapes.items())
            full = pattern if os.path.isabs(pattern) else str(base / pattern)
            if globs and any(c in pattern for c in "*?["):
                paths = sorted(glob.glob(full))
                if not paths:
                    raise ConfigError(f"{where}: no ONNX file matches '{pattern}'")
            else:
                paths = [full]
            return [cls("onnx", str(Path(p).resolve()) if not globs else p,
                        str(name) if name and len(paths) == 1 else
                        (Path(p).stem if short_names else pattern),
                        onnx_shapes=onnx_shapes, dims=dims, batch=batch, base_dir=str(base))
                    for p in paths]
        spec = entry["torch"]
        if not isinstance(spec, str) or ":" not in spec:
            raise ConfigError(f"{where}: torch = {spec!r} must be PACKAGE.MODULE:FACTORY or FILE.py:FACTORY")
        if "input_shape" in entry:
            shapes = parse_shapes(entry["input_shape"], f"{where} input_shape", ConfigError)
        elif "input_shapes" in entry:
            raw = entry["input_shapes"]
            if not isinstance(raw, list) or not raw:
                raise ConfigError(f"{where}: input_shapes is a list of shapes")
            shapes = tuple(parse_shape(s, f"{where} input_shapes", ConfigError) for s in raw)
        else:
            raise ConfigError(f"{where}: a torch model needs input_shape = [...]")
        module, _, attr = spec.rpartition(":")
        source = spec
        if module.endswith(".py") and not os.path.isabs(module):
            source = f"{base / module}:{attr}"
        label = name or (attr if short_names else spec)
        return [cls("torch", source, str(label), input_shapes=shapes, dims=dims, batch=batch,
                    base_dir=str(base))]

    # ---- use ------------------------------------------------------------------------
    def load(self, *, batch=None, dtype=None, weight_density=None) -> Imported:
        """Run the importer: the lowered nodes at ``batch`` (default: the reference's)."""
        batch = self.batch if batch is None else batch
        if self.kind == "onnx":
            from fodlam.importers.onnx import import_file

            return import_file(self.source, input_shapes=dict(self.onnx_shapes) or None,
                               dims=dict(self.dims) or None, batch=batch,
                               weight_density=weight_density)
        if self.kind == "torch":
            from fodlam.importers.torch import import_factory

            self._on_path()
            imported = import_factory(self.source, list(self.input_shapes), batch=batch, dtype=dtype)
            imported.network["name"] = self.name
            return imported
        if self.kind == "config2017":
            from .config2017 import config_imported

            return config_imported(self.source)
        raise InputError(f"unknown model kind {self.kind!r}; one of {', '.join(KINDS)}")

    def _on_path(self) -> None:
        if self.base_dir and self.base_dir not in sys.path:
            sys.path.insert(0, self.base_dir)

    def files(self) -> list[Path]:
        """The files this reference reads: the model file or the module's source, an ONNX
        model's external data, a 2017 configuration (the inputs no output may replace)."""
        return model_files(self.source, kind=self.kind, base_dir=self.base_dir)

    def identity(self) -> str:
        """What a cached result depends on: the file's bytes or the factory's source,
        and the shapes."""
        h = hashlib.sha256()
        if self.kind == "torch":
            import inspect

            from fodlam.importers.torch import load_factory

            self._on_path()
            factory = load_factory(self.source)
            try:
                h.update(Path(inspect.getsourcefile(factory)).read_bytes())
            except (TypeError, OSError):
                h.update(self.source.encode())
        else:
            regular_file(self.source, "ONNX model" if self.kind == "onnx" else "model file")
            with open(self.source, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        h.update(json.dumps([self.kind, self.source, self.input_shapes or None, self.dims]
                            + ([list(self.llm)] if self.llm else [])).encode())
        return h.hexdigest()

    def generate(self, *, batch=None):
        """An LLM generation traced (``importers.torch.trace_generation``, or
        ``importers.onnx.trace_generation_onnx``) for a model with ``llm`` set: the prompt
        pass and sampled decode steps, lowered (a ``fodlam.nodes.GenerationTrace``)."""

        if self.kind not in ("torch", "onnx") or not self.llm:
            raise InputError(f"{self.name}: an LLM entry needs torch = \"MODULE:FACTORY\" (or an "
                             "ONNX decoder with its KV cache) and llm = {...}")
        opts = dict(self.llm)
        if self.kind == "onnx":
            from fodlam.importers.onnx import trace_generation_onnx

            trace = trace_generation_onnx(self.source, opts["prompt_len"], opts["new_tokens"],
                                          batch=batch or 1, samples=opts.get("samples", 3))
            trace.name = self.name
            return trace
        from fodlam.importers.torch import build_factory, trace_generation

        self._on_path()
        trace = trace_generation(build_factory(self.source), opts["prompt_len"], opts["new_tokens"],
                                 batch=batch or 1, samples=opts.get("samples", 3),
                                 cache=opts.get("cache", "dynamic"))
        trace.name = self.name
        return trace


def model_files(target, *, kind: str | None = None, base_dir: str | None = None) -> list[Path]:
    """The files a model target reads: ``FILE.py`` of ``FILE.py:FACTORY`` (or the source of
    ``PACKAGE.MODULE:FACTORY`` where it is found without importing it), an ONNX file with
    its external data, a 2017 configuration; nothing for a target that names no file."""
    import importlib.machinery

    target = str(target)
    out: list[Path] = []
    if kind == "onnx" or target.endswith(".onnx"):
        out.append(Path(target))
        try:
            from fodlam.importers.onnx.wire import external_data_files
            out += external_data_files(target)
        except ImportError:           # without onnx there is nothing more to read
            pass
        return out
    if ":" in target and kind in (None, "torch"):
        module = target.rpartition(":")[0]
        if module.endswith(".py"):
            path = Path(module)
            if base_dir and not path.is_absolute() and not path.is_file():
                path = Path(base_dir) / path
            return [path]
        parts = module.split(".")
        for folder in ([base_dir] if base_dir else []) + [str(Path.cwd())] + sys.path:
            if not folder:
                continue
            spec = importlib.machinery.PathFinder.find_spec(parts[0], [folder])
            if spec is None:
                continue
            if len(parts) == 1:
                return [Path(spec.origin)] if spec.origin else []
            base = Path(spec.submodule_search_locations[0]) if spec.submodule_search_locations else None
            if base is None:
                return []
            cand = base.joinpath(*parts[1:-1], parts[-1] + ".py")
            return [cand] if cand.is_file() else []
        return []
    path = Path(target)
    return [path] if path.suffix in (".json", ".py") else []
