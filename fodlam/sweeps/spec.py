"""Step 1 of a sweep: the sweep file read into its spaces — the models, the accelerator
entries with their grids and point lists (``AccelSpace``: a point's profile and overrides
computed from its index, never held in a list), process nodes, batches and the result's
columns. Overrides of a profile's numeric fields are applied and re-validated here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..accelerator import Accelerator, load_accelerator, read_toml
from ..errors import ConfigError, InputError
from ..layers import KINDS
from ..sources import ModelRef

#: the profile tables each cost model reads: only their numeric fields may be swept
SWEEPABLE = {"fodlam-roofline": ("architecture", "power", "energy", "pipeline", "array", "ops"),
             "fodlam-shape": ("architecture", "shape_model.conv", "shape_model.fc", "pipeline"),
             "fodlam-2017": ()}

BASE_COLUMNS = ["point", "model", "batch", "accelerator", "overrides", "process_nm", "scaling",
                "status", "error", "macs", "energy_j", "latency_s", "edp_js", "unmodeled_nodes",
                "accelerator_source"]
KIND_COLUMNS = [f"{metric}_{kind}" for kind in KINDS for metric in ("energy_j", "latency_s")]


@dataclass(frozen=True)
class AccelSpec:
    profile: str                       # as written in the sweep file
    overrides: tuple = ()              # ((key, value), ...)
    process_nm: float | None = None    # rescale the profile to this node (nm)
    scaling: str | None = None

    @property
    def overrides_text(self) -> str:
        return json.dumps(dict(self.overrides), sort_keys=True) if self.overrides else ""


@dataclass(frozen=True)
class Point:
    index: int
    model: ModelRef
    batch: int | None
    accel: AccelSpec


@dataclass(frozen=True)
class AccelEntry:
    """One ``[[accelerators]]`` entry as a lazy space of points: the product of its grid
    ``axes`` (the last axis varies fastest), then its listed ``points``, each at every
    process node of ``process_nms``. A point is an index; nothing is expanded."""

    profile: str
    axes: tuple = ()                   # ((key, (values...)), ...)
    points: tuple = ()                 # (((key, value), ...), ...)
    process_nms: tuple = (None,)
    scaling: str | None = None

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for _, v in self.axes) if self.axes else 0

    @property
    def variants(self) -> int:
        return (self.grid_size + len(self.points)) or 1

    def __len__(self) -> int:
        return self.variants * len(self.process_nms)

    def variant(self, v: int) -> tuple:
        if v < self.grid_size:
            out = []
            for key, values in reversed(self.axes):      # mixed radix, last axis fastest
                v, digit = divmod(v, len(values))
                out.append((key, values[digit]))
            return tuple(reversed(out))
        return self.points[v - self.grid_size] if self.points else ()

    def spec(self, i: int) -> AccelSpec:
        v, n = divmod(i, len(self.process_nms))
        nm = self.process_nms[n]
        return AccelSpec(self.profile, self.variant(v), nm, self.scaling if nm is not None else None)

    def digest(self) -> str:
        """What the entry's points depend on: the profile's bytes, the axes, points, nodes."""
        h = hashlib.sha256()
        path = Path(self.profile)
        if path.suffix == ".toml" and path.is_file():
            h.update(path.read_bytes())
        else:
            h.update(json.dumps(load_accelerator(self.profile).params, sort_keys=True, default=str).encode())
        h.update(json.dumps([self.profile, self.axes, self.points, self.process_nms, self.scaling],
                            default=str).encode())
        return h.hexdigest()


class AccelSpace(Sequence):
    """Every accelerator point of a sweep, entry after entry, generated on demand."""

    def __init__(self, entries):
        self.entries = list(entries)
        self.offsets = [0]
        for e in self.entries:
            self.offsets.append(self.offsets[-1] + len(e))

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, i: int) -> tuple[int, int]:
        """(entry index, index within the entry) of accelerator point ``i``."""
        import bisect
        if not 0 <= i < len(self):
            raise IndexError(i)
        e = bisect.bisect_right(self.offsets, i) - 1
        return e, i - self.offsets[e]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        e, j = self.locate(i if i >= 0 else len(self) + i)
        return self.entries[e].spec(j)

    def __iter__(self):
        for e in self.entries:
            for j in range(len(e)):
                yield e.spec(j)


class PointSpace(Sequence):
    """Every point of a sweep (models x batches x accelerator points), by index."""

    def __init__(self, sweep: "Sweep"):
        self.sweep = sweep

    def __len__(self) -> int:
        s = self.sweep
        return len(s.models) * len(s.batches) * len(s.accels)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        s = self.sweep
        i = i if i >= 0 else len(self) + i
        if not 0 <= i < len(self):
            raise IndexError(i)
        group, a = divmod(i, len(s.accels))
        m, b = divmod(group, len(s.batches))
        return Point(i, s.models[m], s.batches[b], s.accels[a])

    def __iter__(self):
        return (self[i] for i in range(len(self)))


@dataclass
class Sweep:
    models: list[ModelRef]
    accels: AccelSpace
    batches: list
    path: Path | None = None
    override_keys: list[str] = field(default_factory=list)
    override_types: dict = field(default_factory=dict)     # key -> "int" or "float"
    keep_columns: list | None = None                        # --columns (None: all)
    _digests: list | None = field(default=None, repr=False)

    @property
    def points(self) -> PointSpace:
        return PointSpace(self)

    def entry_digests(self) -> list[str]:
        if self._digests is None:
            self._digests = [e.digest() for e in self.accels.entries]
        return self._digests


# ---- reading a sweep file ---------------------------------------------------------------

def _number(value, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return value


def _models(entries, base: Path) -> list[ModelRef]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("the sweep names no models: add [[models]] tables with onnx = ... or torch = ...")
    out = []
    for i, m in enumerate(entries, 1):
        where = f"[[models]] #{i}"
        if isinstance(m, dict) and "llm" in m:
            out += _llm_models(m, where, base)
            continue
        out += ModelRef.from_table(m, where, base, globs=True, short_names=True)
    return out


#: the LLM generation figures of a sweep row (models with ``llm = {...}``)
LLM_COLUMNS = ["prompt_len", "new_tokens", "time_to_first_token_s", "decode_latency_s_per_token",
               "decode_energy_j_per_token", "tokens_per_s", "energy_per_token_j", "kv_cache_bytes"]


def _llm_models(m: dict, where: str, base: Path) -> list[ModelRef]:
    """An LLM entry: ``torch = "MODULE:FACTORY"`` and ``llm = { prompt_len = [...],
    new_tokens = [...], samples = 3, cache = "dynamic" }``: one model per prompt length and
    generated-token count (the sweep's ``batches`` are the sequences generated together)."""
    spec = m["llm"]
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: llm must be a table {{ prompt_len = [512], new_tokens = [128] }}")
    unknown = sorted(set(spec) - {"prompt_len", "new_tokens", "samples", "cache"})
    if unknown:
        raise ConfigError(f"{where}: llm has unknown key(s) {', '.join(unknown)}; known: "
                          "prompt_len, new_tokens, samples, cache")
    if "torch" not in m and "onnx" not in m:
        raise ConfigError(f"{where}: an llm entry needs torch = \"MODULE:FACTORY\" (a causal LM) "
                          "or onnx = \"decoder.onnx\" (exported with its KV cache)")

    def axis(key):
        v = spec.get(key)
        v = v if isinstance(v, list) else [v]
        if not v or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
            raise ConfigError(f"{where}: llm.{key} must be a positive integer or a list of them")
        return v
    prompts, news = axis("prompt_len"), axis("new_tokens")
    samples = spec.get("samples", 3)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"{where}: llm.samples must be a positive integer")
    cache = spec.get("cache", "dynamic")
    if cache not in ("dynamic", "static"):
        raise ConfigError(f"{where}: llm.cache must be \"dynamic\" or \"static\"")
    entry = {k: v for k, v in m.items() if k != "llm"}
    if "torch" in entry:
        entry.setdefault("input_shape", [1, 1])   # the generation sets the shapes
    (ref,) = ModelRef.from_table(entry, where, base, short_names=True)
    from dataclasses import replace as _replace

    return [_replace(ref, name=f"{ref.name}@prompt{p}+{n}",
                     llm=(("prompt_len", p), ("new_tokens", n), ("samples", samples), ("cache", cache)))
            for p in prompts for n in news]


def accelerator_label(profile: str) -> str:
    """The ``accelerator`` column of a row: the profile's name without folder or suffix."""
    return profile.rsplit("/", 1)[-1].removesuffix(".toml")


def profile_source(acc: Accelerator) -> str:
    """Where a profile comes from, as rows carry it: ``bundled:NAME``, or the file and the
    first 12 hex digits of its content's SHA-256 (two files of one name are told apart)."""
    from ..accelerator import _accelerators_dir

    path = Path(acc.path) if acc.path else None
    if path is None:
        return f"object:{acc.name}"
    try:
        if path.resolve().parent == _accelerators_dir().resolve():
            return f"bundled:{path.stem}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return str(path)
    return f"{path}#sha256:{digest}"


def _profile_spec(name: str, base: Path) -> str:
    if name.endswith(".toml") and not os.path.isabs(name) and (base / name).is_file():
        return str(base / name)
    return name


def sweepable_fields(acc: Accelerator) -> dict[str, float]:
    """``table.field`` -> value for every numeric field of the typed sections its cost model
    reads (``fodlam.accelerator``), where the profile sets it."""
    key = id(acc)
    hit = _SWEEPABLE_CACHE.get(key)
    if hit is not None and hit[0] is acc:
        return hit[1]
    out = _sweepable_fields(acc)
    if len(_SWEEPABLE_CACHE) > 256:
        _SWEEPABLE_CACHE.clear()
    _SWEEPABLE_CACHE[key] = (acc, out)
    return out


_SWEEPABLE_CACHE: dict = {}


def _sweepable_fields(acc: Accelerator) -> dict[str, float]:
    from dataclasses import fields

    out = {}
    for table in SWEEPABLE.get(acc.cost_model, ()):
        section = acc
        for part in table.split("."):
            section = getattr(section, part, None) if section is not None else None
        if section is None:
            continue
        for f in fields(section):
            value = getattr(section, f.name)
            if f.metadata.get("kind") in ("int", "float") and value is not None:
                out[f"{table}.{f.name}"] = value
    return out


def apply_overrides(acc: Accelerator, overrides) -> Accelerator:
    """A copy of the profile with ``table.field = value`` overrides; an unknown, non-numeric
    or meaningless key (one its cost model never reads) is a one-line ConfigError."""
    if not overrides:
        return acc
    allowed = sweepable_fields(acc)
    params = dict(acc.params)          # copy-on-write along each overridden path
    for key, value in overrides:
        if key not in allowed:
            hint = ", ".join(sorted(allowed)) or "none: this cost model has no sweepable fields"
            raise ConfigError(f"profile {acc.name} ({acc.cost_model}) has no numeric field '{key}' "
                              f"that its cost model reads; sweepable: {hint}")
        value = _number(value, f"override {key}")
        if value < 0:
            raise ConfigError(f"override {key} = {value}: must not be negative")
        table, _, name = key.rpartition(".")
        d = params
        for part in table.split("."):
            d[part] = dict(d.get(part) or {})
            d = d[part]
        old = d.get(name, allowed[key])
        d[name] = int(value) if isinstance(old, int) and float(value).is_integer() else value
    label = ",".join(f"{k.rsplit('.', 1)[1]}={v:g}" for k, v in overrides)
    changes: dict = {}
    for key, _ in overrides:
        table, _, name = key.rpartition(".")
        d = params
        for part in table.split("."):
            d = d[part]
        changes.setdefault(table, {})[name] = d[name]
    return acc.with_overrides(params, changes, f"{acc.name}[{label}]")


def _accels(entries, process_nms, scaling, base: Path) -> tuple[AccelSpace, list[str], dict]:
    """The accelerator entries as lazy spaces. Every axis value and listed point is
    validated once, against the entry's profile, before any point exists: a typo in a grid
    of 10^9 points is found in the time it takes to read its axes."""
    if not isinstance(entries, list) or not entries:
        raise ConfigError("the sweep names no accelerators: add [[accelerators]] tables with profile = ...")
    out, keys, types, sources = [], [], {}, {}
    for i, a in enumerate(entries, 1):
        where = f"[[accelerators]] #{i}"
        if not isinstance(a, dict) or "profile" not in a:
            raise ConfigError(f"{where}: give profile = \"NAME\" (fodlam profiles lists them) or a .toml path")
        profile = _profile_spec(str(a["profile"]), base)
        acc = load_accelerator(profile)
        label, source = accelerator_label(profile), profile_source(acc)
        if sources.setdefault(label, source) != source:
            raise ConfigError(f"{where}: profile {profile} is labelled '{label}' like another "
                              f"accelerator of this sweep ({sources[label]}) but is a different "
                              "profile: rename one file, so that rows can be told apart")
        grid = a.get("grid", {})
        points = a.get("points", [])
        if not isinstance(grid, dict) or not isinstance(points, list):
            raise ConfigError(f"{where}: grid is a table of lists, points a list of tables")
        grid = dict(grid)
        # fields written directly in the entry (architecture.pe_rows = [8, 12, 16]) are grid
        # axes too; a single number is a fixed override
        for key, value in _flatten({k: v for k, v in a.items()
                                    if k not in ("profile", "grid", "points", "nodes", "process_nm",
                                                 "scaling")}).items():
            if key in grid:
                raise ConfigError(f"{where}: {key} is both fixed in the entry and swept in its grid; "
                                  "keep one of them")
            grid[key] = value if isinstance(value, list) else [value]
        entry_nms = a.get("nodes", a.get("process_nm"))
        if entry_nms is not None:
            entry_nms = entry_nms if isinstance(entry_nms, list) else [entry_nms]
            entry_nms = [float(_number(n, f"{where} nodes")) for n in entry_nms]
            if not entry_nms or any(not 1 <= n <= 1000 for n in entry_nms):
                raise ConfigError(f"{where}: process nodes must be between 1 and 1000 nm, got "
                                  f"{entry_nms!r}")
        entry_scaling = _scaling(a.get("scaling", scaling), where)
        axes = []
        for k, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: grid {k} must be a non-empty list of numbers")
            for v in values:                      # each value of each axis, once
                apply_overrides(acc, ((k, v),))
            axes.append((k, tuple(values)))
        listed = []
        for p in points:
            if not isinstance(p, dict):
                raise ConfigError(f"{where}: points must be tables like {{ \"architecture.clock_mhz\" = 800 }}")
            apply_overrides(acc, tuple(p.items()))
            listed.append(tuple(p.items()))
        for k, v in [(k, v) for k, vs in axes for v in vs] + [kv for p in listed for kv in p]:
            if k not in keys:
                keys.append(k)
            kind = "int" if isinstance(v, int) and not isinstance(v, bool) else "float"
            types[k] = "float" if types.get(k) == "float" else kind
        nms = tuple(entry_nms or process_nms)
        out.append(AccelEntry(profile, tuple(axes), tuple(listed), nms, entry_scaling))
    return AccelSpace(out), keys, types


def _scaling(value, where: str) -> str:
    from ..technology import RULES
    if not isinstance(value, str) or value not in RULES:
        raise ConfigError(f"{where}: scaling must be one of {', '.join(RULES)}, not {value!r}")
    return value


def _flatten(table: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_sweep(path) -> Sweep:
    path = Path(path)
    data = read_toml(path, "sweep file")
    head = data.get("sweep", {})
    if not isinstance(head, dict):
        raise ConfigError(f"{path}: [sweep] must be a table")
    batches = head.get("batches", [None])
    if not isinstance(batches, list) or not batches or not all(
            b is None or (isinstance(b, int) and not isinstance(b, bool) and b > 0) for b in batches):
        raise ConfigError(f"{path}: batches must be a list of positive integers")
    process_nms = head.get("nodes", head.get("process_nm", [None]))
    if not isinstance(process_nms, list):
        process_nms = [process_nms]
    if not process_nms:
        raise ConfigError(f"{path}: nodes must be a list of process nodes in nm")
    process_nms = [None if n is None else float(_number(n, "nodes")) for n in process_nms]
    if any(n is not None and not 1 <= n <= 1000 for n in process_nms):
        raise ConfigError(f"{path}: process nodes must be between 1 and 1000 nm")
    scaling = _scaling(head.get("scaling", "dennard"), str(path))
    models = _models(data.get("models"), path.parent)
    seen: dict = {}
    for m in models:
        if m.name in seen and seen[m.name] != m.source:
            raise ConfigError(f"{path}: two models are named '{m.name}' ({seen[m.name]} and {m.source}); "
                              "give each a distinct name = \"...\" so their results stay apart")
        seen[m.name] = m.source
    accels, keys, types = _accels(data.get("accelerators"), process_nms, scaling, path.parent)
    return Sweep(models, accels, batches, path, keys, types)


# ---- the result's columns ---------------------------------------------------------------

#: columns every result keeps, whatever --columns says
REQUIRED_COLUMNS = ["point", "model", "batch", "accelerator", "overrides", "process_nm", "status",
                    "error", "energy_j", "latency_s"]
_INT_COLUMNS = {"point", "batch", "macs", "unmodeled_nodes", "prompt_len", "new_tokens",
                "kv_cache_bytes"}
_STR_COLUMNS = {"model", "accelerator", "overrides", "scaling", "status", "error",
                "accelerator_source"}


def all_columns(sweep: Sweep) -> list[str]:
    llm = LLM_COLUMNS if any(m.llm for m in sweep.models) else []
    return BASE_COLUMNS + list(sweep.override_keys) + llm + KIND_COLUMNS


def columns(sweep: Sweep) -> list[str]:
    """The result's columns: every one, or the ones ``--columns`` keeps (plus the point's
    identity and its totals, always)."""
    full = all_columns(sweep)
    if sweep.keep_columns is None:
        return full
    keep = set(sweep.keep_columns) | set(REQUIRED_COLUMNS)
    return [c for c in full if c in keep]


def select_columns(sweep: Sweep, spec: str) -> None:
    """``--columns``: "all", "minimal" (no per-kind columns), or a comma-separated list of
    column names (``by-kind`` stands for the per-kind energy and latency columns)."""
    full = all_columns(sweep)
    if spec in (None, "", "all"):
        sweep.keep_columns = None
        return
    names = []
    for name in (n.strip() for n in spec.split(",")):
        if name == "minimal":
            names += [c for c in full if c not in KIND_COLUMNS]
        elif name == "by-kind":
            names += KIND_COLUMNS
        elif name in full:
            names.append(name)
        else:
            raise InputError(f"--columns: no column '{name}'; choose from all, minimal, by-kind or "
                             f"{', '.join(full)}")
    sweep.keep_columns = names


def column_types(sweep: Sweep) -> dict:
    out = {}
    for c in all_columns(sweep):
        if c in _INT_COLUMNS:
            out[c] = "int"
        elif c in _STR_COLUMNS:
            out[c] = "str"
        else:
            out[c] = sweep.override_types.get(c, "float")
    return out
