"""Design-space sweeps: models x accelerator variants x process nodes x batches.

    fodlam sweep SWEEP.toml [--jobs N] [--backend ray --address ADDR] [--pareto] [--top K]

A sweep file names the models (ONNX paths or globs, ``module:factory`` torch models with
input shapes), the accelerators (bundled names or TOML paths) with overrides of their
numeric fields as grids or lists, process nodes and batches::

    [sweep]
    batches = [1, 8]
    nodes = [28, 7]                 # optional; each profile's own node when absent
    scaling = "dennard"

    [[models]]
    onnx = "zoo/*.onnx"
    dims = { batch = 1 }

    [[models]]
    torch = "examples.zoo:resnet50"
    input_shape = [1, 3, 224, 224]

    [[accelerators]]
    profile = "tpu-v1"
    grid = { "architecture.array_k" = [64, 128, 256], "architecture.clock_mhz" = [700, 1000] }

    [[accelerators]]
    profile = "nvdla-nv-full"
    points = [{ "architecture.onchip_bytes" = 1048576 }, { "architecture.dram_bytes_per_s" = 64e9 }]

Each model is imported once per batch; its lowered nodes are costed on every accelerator
point. A point's row is cached under a hash of (model file bytes or factory source, shapes,
batch, the profile after overrides, node and scaling, FODLAM version), so an interrupted or
extended sweep redoes only what is missing. Rows come out in the order of the sweep file
whatever the number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._version import __version__
from .accelerator import Accelerator, load_accelerator, read_toml
from .errors import ConfigError, FodlamError, InputError
from .layers import KINDS
from .report.sweep import front, group_label
from .sources import ModelRef

#: the profile tables each cost model reads: only their numeric fields may be swept
SWEEPABLE = {"fodlam-roofline": ("architecture", "power", "energy", "pipeline"),
             "fodlam-shape": ("architecture", "shape_model.conv", "shape_model.fc", "pipeline"),
             "fodlam-2017": ()}

BASE_COLUMNS = ["point", "model", "batch", "accelerator", "overrides", "process_nm", "scaling",
                "status", "error", "macs", "energy_j", "latency_s", "edp_js", "unmodeled_nodes"]
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
    out, keys, types = [], [], {}
    for i, a in enumerate(entries, 1):
        where = f"[[accelerators]] #{i}"
        if not isinstance(a, dict) or "profile" not in a:
            raise ConfigError(f"{where}: give profile = \"NAME\" (fodlam profiles lists them) or a .toml path")
        profile = _profile_spec(str(a["profile"]), base)
        acc = load_accelerator(profile)
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
    from .technology import RULES
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


# ---- importing and costing --------------------------------------------------------------

def import_model(m: ModelRef, batch):
    """The lowered nodes of a model at a batch (None: the model's own); for an LLM entry,
    its traced generation (``fodlam.llm.GenerationTrace``)."""
    if m.llm:
        return m.generate(batch=batch)
    return m.load(batch=batch).nodes


@functools.lru_cache(maxsize=64)
def _base_profile(spec: str) -> Accelerator:
    return load_accelerator(spec)


def effective(accel: AccelSpec) -> Accelerator:
    acc = apply_overrides(_base_profile(accel.profile), accel.overrides)
    if accel.process_nm is not None:
        acc = acc.at_node(accel.process_nm, accel.scaling)
    return acc


@dataclass(frozen=True)
class CostPlan:
    """What every point of a model shares: its distinct layers (the same layer is costed
    once per point), the order in which their costs add up, its MACs and its unmodeled
    nodes: computed once per chunk, not once per point. ``spans`` place each modeled node's
    layers in ``order``; ``fusions`` keeps the fusion plan per pipeline (fodlam/fusion.py)."""

    keys: tuple              # distinct (layer, reference)
    order: tuple             # (index into keys, layer kind) in graph order
    macs: int
    unmodeled: int
    spans: tuple = ()        # (node name, start, end) into order
    nodes: tuple = ()
    fusions: dict = field(default_factory=dict, compare=False)

    def fusion(self, absorbs) -> dict:
        from . import fusion

        key = tuple(absorbs)
        hit = self.fusions.get(key)
        if hit is None:
            hit = self.fusions[key] = fusion.plan(self.nodes, key)
        return hit


def cost_plan(nodes) -> CostPlan:
    keys, index, order, spans = [], {}, [], []
    macs = unmodeled = 0
    for node in nodes:
        if not node.modeled:
            unmodeled += 1
            continue
        macs += node.macs
        start = len(order)
        for i, layer in enumerate(node.layers):
            key = (layer, node.reference if i == 0 else None)
            j = index.get(key)
            if j is None:
                j = index[key] = len(keys)
                keys.append(key)
            order.append((j, layer.kind))
        spans.append((node.name, start, len(order)))
    return CostPlan(tuple(keys), tuple(order), macs, unmodeled, tuple(spans), tuple(nodes))


def cost_nodes(nodes, acc: Accelerator, plan: CostPlan | None = None) -> dict:
    """Totals of a lowered model on one accelerator: what a sweep row holds (the same sums
    as ``build_profile``, fused post-processing included)."""
    from . import models

    plan = plan or cost_plan(nodes)
    model = models.for_accelerator(acc)
    ests = [model.estimate(*key) for key in plan.keys]
    pipeline = getattr(model, "pipeline", None)
    fused = plan.fusion(pipeline.absorbs) if pipeline is not None else {}
    chains: dict = {}
    if fused:
        from . import fusion

        heads = set(fused.values())
        own = {name: tuple(ests[j] for j, _ in plan.order[a:b]) for name, a, b in plan.spans
               if name in heads}
        chains = fusion.cost_chains(plan.nodes, fused, own, model,
                                    streamed=getattr(model, "streamed", False))
    energy = latency = 0.0
    kinds: dict = {}
    for name, a, b in plan.spans:       # graph order: the same sums as costing node by node
        chain = chains.get(name)
        for i, (j, kind) in enumerate(plan.order[a:b]):
            est = chain[i] if chain is not None else ests[j]
            energy += est.energy_j
            latency += est.latency_s
            k = kinds.setdefault(kind, [0.0, 0.0])
            k[0] += est.energy_j
            k[1] += est.latency_s
    row = {"macs": plan.macs, "energy_j": energy, "latency_s": latency, "edp_js": energy * latency,
           "unmodeled_nodes": plan.unmodeled}
    for kind in KINDS:
        e, t = kinds.get(kind, (0.0, 0.0))
        row[f"energy_j_{kind}"] = e
        row[f"latency_s_{kind}"] = t
    return row


def cost_generation_row(trace, acc: Accelerator) -> dict:
    """A sweep row of an LLM entry: the generation's totals (prefill and every decode step)
    and its per-token figures; per-kind columns from the prefill and the sampled decode
    steps (their mean for every step)."""
    from . import models
    from .llm import cost_generation

    gen = cost_generation(trace, models.for_accelerator(acc))
    row = {"macs": gen.total_macs, "energy_j": gen.total_energy_j, "latency_s": gen.total_latency_s,
           "edp_js": gen.total_energy_j * gen.total_latency_s,
           "unmodeled_nodes": sum(gen.prefill.unmodeled.values())}
    steps = gen.decode_steps
    kinds = {}
    for prof, weight in [(gen.prefill, 1.0)] + [(gen.decode_first, steps / 2), (gen.decode_last, steps / 2)]:
        for kind, v in prof.by_kind().items():
            k = kinds.setdefault(kind, [0.0, 0.0])
            k[0] += weight * v["energy_j"]
            k[1] += weight * v["latency_s"]
    for kind in KINDS:
        e, t = kinds.get(kind, (0.0, 0.0))
        row[f"energy_j_{kind}"] = e
        row[f"latency_s_{kind}"] = t
    row.update(prompt_len=gen.prompt_len, new_tokens=gen.new_tokens,
               **{k: getattr(gen, k) for k in LLM_COLUMNS[2:]})
    return row


def run_chunk(nodes, accels: list[AccelSpec]) -> list[dict]:
    """Cost one model's graph nodes on a chunk of accelerator points (runs in a worker)."""
    if not isinstance(nodes, list):          # an LLM entry: its traced generation
        out = []
        for accel in accels:
            try:
                out.append(cost_generation_row(nodes, effective(accel)))
            except Exception as e:  # noqa: BLE001 - one point fails with its reason
                out.append({"error": _one_line(e)})
        return out
    plan = cost_plan(nodes)
    out = []
    for accel in accels:
        try:
            out.append(cost_nodes(nodes, effective(accel), plan=plan))
        except Exception as e:  # noqa: BLE001 - one point fails with its reason, never the sweep
            out.append({"error": _one_line(e)})
    return out


# ---- running --------------------------------------------------------------------------

@dataclass
class Result:
    """A finished (or interrupted) sweep: counts, the models that failed to import, and its
    chunks, whose rows live in Parquet parts; ``rows`` reads them all (in sweep order),
    ``iter_rows()`` one at a time."""

    failed_models: dict
    sweep: "Sweep | None" = None
    parts: "Parts | None" = None
    chunks: list = field(default_factory=list)      # ChunkRef, in sweep order
    cached: int = 0              # points of chunks finished by an earlier run
    computed: int = 0            # points costed by this run
    failed_points: int = 0
    interrupted: object = False  # False, True or the signal's number
    import_s: float = 0.0        # seconds spent importing models
    _tmp: object = None          # a temporary parts folder kept alive with the result

    def iter_rows(self):
        for ref in self.chunks:
            yield from self.parts.read(ref)

    @property
    def rows(self) -> list[dict]:
        return list(self.iter_rows())

    @property
    def failed(self) -> bool:
        return bool(self.failed_models) or self.failed_points > 0 or bool(self.interrupted)


def _one_line(e: BaseException) -> str:
    if isinstance(e, FodlamError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _progress(total: int, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="pt", desc="sweep", file=sys.stderr, smoothing=0.1)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) during a sweep: finish what is being written, keep every finished
    point, stop the workers, exit 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_pool(pool) -> None:
    """Cancel what has not started and end the workers now (they hold no state to save)."""
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():  # pragma: no cover - a worker ignoring SIGTERM
            proc.kill()


def _worker_signals() -> None:
    """Workers take SIGTERM and SIGINT as any process does (the driver stops them)."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def on_signals():
    """A context in which SIGTERM and SIGINT raise ``Interrupted`` in the driver (the main
    thread only; elsewhere it does nothing)."""
    import contextlib
    import signal
    import threading

    @contextlib.contextmanager
    def scope():
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def raise_interrupted(signum, _frame):
            raise Interrupted(signum)
        old = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    return scope()


#: points per chunk, the unit of work, of the cache and of the output parts; fixed (not
#: tied to the worker count) so that a rerun with other settings reuses finished chunks
CHUNK = 4096
#: the first chunk of each model, batch and accelerator entry
FIRST_CHUNK = 256


@dataclass(frozen=True)
class ChunkRef:
    """A chunk of one model at one batch on a contiguous range of one accelerator entry."""

    key: str                 # content hash: the part's file name
    point0: int              # global index of the chunk's first point
    rows: int
    ok: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ChunkTask:
    key: str
    point0: int
    model: str
    batch: int | None
    entry: AccelEntry
    start: int
    stop: int


class Parts:
    """The parts folder of a sweep: one Parquet file per finished chunk (written to a
    temporary name and renamed, so a part is whole or absent) and ``index.jsonl``, one line
    per finished chunk: resuming reads the index, not the rows. ``root`` is a local folder
    or any ``pyarrow.fs`` URI (``s3://bucket/prefix``) that every worker can write to."""

    def __init__(self, root, columns: list[str], types: dict):
        self.root = str(root)
        self.columns = list(columns)
        self.types = dict(types)
        self.uri = "://" in self.root

    # -- storage --------------------------------------------------------------------------
    def _fs(self):
        import pyarrow.fs as pafs
        if self.uri:
            return pafs.FileSystem.from_uri(self.root)
        return pafs.LocalFileSystem(), os.path.abspath(self.root)

    def prepare(self) -> None:
        fs, base = self._fs()
        fs.create_dir(base, recursive=True)

    def schema(self):
        import pyarrow as pa
        kinds = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
        return pa.schema([(c, kinds[self.types.get(c, "float")]) for c in self.columns])

    def write(self, key: str, rows: list[dict]) -> None:
        """A chunk's rows as one Parquet part, atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self.schema()
        table = pa.Table.from_pylist([{c: r.get(c) for c in self.columns} for r in rows], schema=schema)
        fs, base = self._fs()
        tmp = f"{base}/.{key}.{os.getpid()}.tmp"
        with fs.open_output_stream(tmp) as out:
            pq.write_table(table, out, compression="zstd")
        fs.move(tmp, f"{base}/{key}.parquet")

    def read(self, ref: ChunkRef):
        import pyarrow.parquet as pq

        fs, base = self._fs()
        with fs.open_input_file(f"{base}/{ref.key}.parquet") as f:
            table = pq.read_table(f)
        for j, r in enumerate(table.to_pylist()):
            yield {"point": ref.point0 + j, **{k: v for k, v in r.items() if k != "point"}}

    def read_table(self, ref: ChunkRef):
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs, base = self._fs()
        with fs.open_input_file(f"{base}/{ref.key}.parquet") as f:
            table = pq.read_table(f)
        points = pa.array(range(ref.point0, ref.point0 + table.num_rows), pa.int64())
        return table.set_column(table.schema.get_field_index("point"), "point", points)

    # -- the index of finished chunks ------------------------------------------------------
    def load_index(self) -> dict:
        fs, base = self._fs()
        try:
            with fs.open_input_stream(f"{base}/index.jsonl") as f:
                data = f.read()
        except (FileNotFoundError, OSError):
            return {}
        done = {}
        for line in data.splitlines():
            try:
                item = json.loads(line.decode("utf-8"))
                key = item["key"]
                if isinstance(key, str) and all(isinstance(item[k], int) and item[k] >= 0
                                                for k in ("rows", "ok", "failed")):
                    done[key] = item
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue                  # a line cut short, or not ours: that chunk reruns
        return done

    def exists(self, key: str) -> bool:
        import pyarrow.fs as pafs
        fs, base = self._fs()
        return fs.get_file_info(f"{base}/{key}.parquet").type == pafs.FileType.File

    def record(self, refs: list) -> None:
        """Append finished chunks to the index (local folders; a URI keeps its parts and
        relies on them: ``exists`` is checked on resume)."""
        if self.uri or not refs:
            return
        with open(os.path.join(self.root, "index.jsonl"), "a", encoding="utf-8") as f:
            for ref in refs:
                f.write(json.dumps({"key": ref.key, "rows": ref.rows, "ok": ref.ok,
                                    "failed": ref.failed}) + "\n")
            f.flush()


def chunk_rows(nodes, task: ChunkTask) -> list[dict]:
    """The rows of one chunk: its points costed (a failing point is a failed row)."""
    specs = [task.entry.spec(i) for i in range(task.start, task.stop)]
    out = run_chunk(nodes, specs)
    rows = []
    for spec, res in zip(specs, out):
        base = _identity(task.model, task.batch, spec)
        if "error" in res:
            rows.append({**base, "status": "failed", "error": res["error"]})
        else:
            rows.append({**base, "status": "ok", "error": "", **res})
    return rows


def cost_chunk(nodes, task: ChunkTask, parts: Parts) -> ChunkRef:
    """Cost a chunk and write its part (runs in a worker; returns only counts)."""
    rows = chunk_rows(nodes, task)
    parts.write(task.key, rows)
    failed = sum(r["status"] != "ok" for r in rows)
    return ChunkRef(task.key, task.point0, len(rows), len(rows) - failed, failed)


def _identity(model: str, batch, spec: AccelSpec) -> dict:
    row = {"model": model, "batch": batch, "accelerator": spec.profile.rsplit("/", 1)[-1].removesuffix(".toml"),
           "overrides": spec.overrides_text, "process_nm": spec.process_nm, "scaling": spec.scaling or ""}
    row.update(spec.overrides)
    return row


def plan_chunks(sweep: "Sweep", mi: int, bi: int, model_id: str, chunk: int = CHUNK):
    """The chunks of one model at one batch: each accelerator entry cut into ranges of
    ``chunk`` points (a chunk never spans two entries, so adding an entry, a model or a
    batch leaves every finished chunk as it was)."""
    model, batch = sweep.models[mi], sweep.batches[bi]
    group0 = (mi * len(sweep.batches) + bi) * len(sweep.accels)
    digests = sweep.entry_digests()
    first = min(FIRST_CHUNK, chunk)          # a small first chunk: the first rows come early
    for e, entry in enumerate(sweep.accels.entries):
        edges = [0] + list(range(min(first, len(entry)), len(entry), chunk)) + [len(entry)]
        for start, stop in zip(edges, edges[1:]):
            key = hashlib.sha256(json.dumps([__version__, model_id, model.name, batch, digests[e],
                                             start, stop, columns(sweep)]).encode()).hexdigest()[:32]
            yield ChunkTask(key, group0 + sweep.accels.offsets[e] + start, model.name, batch, entry,
                            start, stop)


def run(sweep: Sweep, *, jobs: int | None = None, backend: str = "local", address: str | None = None,
        cache_path=None, chunk_size: int | None = None, quiet: bool = False, log=None,
        on_chunk=None) -> Result:
    """Cost every point of a sweep, chunk by chunk; each finished chunk is a Parquet part in
    ``cache_path`` (a folder or a ``pyarrow.fs`` URI; a temporary folder when None) and a
    line of its index, so a rerun costs only the missing chunks. ``backend`` is "local" (a
    process pool of ``jobs`` workers; 1 runs in-process) or "ray" (``address`` of a cluster,
    or a local one; workers write their parts themselves). The driver holds one chunk's
    description at a time per worker, never the points. ``on_chunk(ChunkRef)`` is called as
    each chunk finishes."""
    import tempfile

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InputError("sweeps write their results as Parquet parts: pip install 'fodlam[sweep]'") from None
    log = log or (lambda msg: print(msg, file=sys.stderr))
    chunk = chunk_size or CHUNK
    tmp = None
    if cache_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="fodlam-sweep-")
        cache_path = tmp.name
    elif "://" not in str(cache_path) and Path(cache_path).is_file():
        raise InputError(f"the sweep cache {cache_path} is a file; since chunks became the unit of the "
                         "cache it is a folder of Parquet parts: give a folder path (or delete the file)")
    parts = Parts(cache_path, columns(sweep), column_types(sweep))
    parts.prepare()
    done = parts.load_index()
    result = Result({}, sweep, parts, _tmp=tmp)
    jobs = max(1, jobs or os.cpu_count() or 1)
    bar = _progress(len(sweep.points), quiet)
    pool = None
    try:
        for mi, model in enumerate(sweep.models):
            t_import = time.perf_counter()
            try:
                model_id, id_err = model.identity(), None
            except Exception as e:  # noqa: BLE001 - a model that cannot be read fails its rows only
                model_id, id_err = "unreadable", _one_line(e)
            result.import_s += time.perf_counter() - t_import
            for bi, batch in enumerate(sweep.batches):
                tasks, nodes, err = [], None, id_err
                for task in plan_chunks(sweep, mi, bi, model_id, chunk):
                    item = done.get(task.key) if err is None else None
                    if item and parts.exists(task.key):
                        result.chunks.append(ChunkRef(task.key, task.point0, item["rows"], item["ok"],
                                                      item["failed"]))
                        result.cached += item["rows"]
                        result.failed_points += item["failed"]
                        if bar:
                            bar.update(item["rows"])
                    else:
                        tasks.append(task)
                if not tasks:
                    continue
                if err is None:
                    t_import = time.perf_counter()
                    try:
                        nodes = import_model(model, batch)
                    except Exception as e:  # noqa: BLE001 - reported once, its points marked failed
                        err = _one_line(e)
                    result.import_s += time.perf_counter() - t_import
                if err is None:
                    pool = _execute(tasks, nodes, parts, result, backend, address, jobs, pool, bar,
                                    on_chunk)
                    continue
                if result.failed_models.get(model.name) != err:     # once per model and error
                    result.failed_models[model.name] = err
                    log(f"fodlam sweep: {model.name} failed to import"
                        + (f" at batch {batch}" if batch else "") + f": {err}")
                for task in tasks:                      # failed rows, never recorded as done
                    n = task.stop - task.start
                    ref = ChunkRef("failed-" + task.key, task.point0, n, 0, n)
                    parts.write(ref.key, [{**_identity(task.model, task.batch, task.entry.spec(i)),
                                           "status": "failed", "error": err}
                                          for i in range(task.start, task.stop)])
                    result.chunks.append(ref)
                    result.failed_points += n
                    if bar:
                        bar.update(n)
    except KeyboardInterrupt as e:
        result.interrupted = getattr(e, "signum", None) or True
        log("fodlam sweep: interrupted; every finished chunk is kept (parts and output)")
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        if bar:
            bar.close()
    result.chunks.sort(key=lambda ref: ref.point0)
    return result


def _execute(tasks, nodes, parts, result, backend, address, jobs, pool, bar, on_chunk=None):
    """Run one group's chunks; finished chunks are recorded as they finish."""
    def collect(task, ref: ChunkRef):
        result.chunks.append(ref)
        result.computed += ref.rows
        result.failed_points += ref.failed
        if ref.failed == 0:           # a chunk with a failed point runs again next time
            parts.record([ref])
        if bar:
            bar.update(ref.rows)
        if on_chunk:
            on_chunk(ref)

    if backend == "ray":
        from .sweep_ray import run_tasks
        run_tasks([(nodes, t) for t in tasks], collect, cost_chunk, address=address, jobs=jobs,
                  extra=(parts,))
        return pool
    if jobs == 1 or len(tasks) == 1 and pool is None:
        for task in tasks:
            collect(task, cost_chunk(nodes, task, parts))
        return pool
    import multiprocessing
    from concurrent import futures
    if pool is None:
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        pool = futures.ProcessPoolExecutor(min(jobs, max(1, len(tasks))), mp_context=ctx,
                                           initializer=_worker_signals)
    try:
        pending, queue = {}, iter(tasks)
        window = 2 * jobs
        for task in queue:                              # at most `window` chunks in flight
            pending[pool.submit(cost_chunk, nodes, task, parts)] = task
            if len(pending) >= window:
                finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                for fut in finished:
                    collect(pending.pop(fut), fut.result())
        while pending:
            finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
            for fut in finished:
                collect(pending.pop(fut), fut.result())
    except BaseException:
        # interrupted (SIGINT, SIGTERM) or failed: no worker outlives the driver
        _stop_pool(pool)
        raise
    return pool


# ---- output ---------------------------------------------------------------------------

#: columns every result keeps, whatever --columns says
REQUIRED_COLUMNS = ["point", "model", "batch", "accelerator", "overrides", "process_nm", "status",
                    "error", "energy_j", "latency_s"]
_INT_COLUMNS = {"point", "batch", "macs", "unmodeled_nodes", "prompt_len", "new_tokens",
                "kv_cache_bytes"}
_STR_COLUMNS = {"model", "accelerator", "overrides", "scaling", "status", "error"}


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


def _csv_value(v):
    return "" if v is None else (repr(v) if isinstance(v, float) else v)


def write_csv(path, sweep: Sweep, rows) -> None:
    """The sweep's rows (any iterable: a Result's ``iter_rows()`` streams them) as CSV,
    written atomically (never a half-written file)."""
    import csv

    from ._io import atomic_path
    cols = columns(sweep)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_csv_value(r.get(c)) for c in cols])


#: rows per row group of the final Parquet file
ROW_GROUP = 65536


def write_parquet(path, sweep: Sweep, rows) -> None:
    """The sweep's rows as one Parquet file (zstd), written atomically: from a Result its
    parts are streamed in order, one row group per chunk; from a list, in one go."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("Parquet output needs pyarrow: pip install 'fodlam[sweep]' (or use --no-parquet)") from None
    from ._io import atomic_path
    parts = rows.parts if isinstance(rows, Result) else Parts("", columns(sweep), column_types(sweep))
    schema = parts.schema()
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(str(tmp), schema, compression="zstd") as writer:
            if isinstance(rows, Result):
                # parts gathered into row groups of about ROW_GROUP rows: few row groups (small
                # footer metadata), bounded memory
                batch, n = [], 0
                for ref in rows.chunks:
                    table = parts.read_table(ref).select(schema.names).cast(schema)
                    batch.append(table)
                    n += table.num_rows
                    if n >= ROW_GROUP:
                        writer.write_table(pa.concat_tables(batch), row_group_size=n)
                        batch, n = [], 0
                if batch:
                    writer.write_table(pa.concat_tables(batch), row_group_size=n)
            else:
                writer.write_table(pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows],
                                                        schema=schema))


def read_results(path) -> list[dict]:
    """Rows of a sweep result (CSV or Parquet) as dicts with numbers where numbers belong."""
    return list(iter_results(path))


_TEXT_COLUMNS = ("model", "accelerator", "overrides", "status", "error", "scaling")


def _typed_row(r: dict) -> dict:
    for k, v in r.items():
        if k in _TEXT_COLUMNS:
            continue
        if isinstance(v, str):
            try:
                v = float(v) if v != "" else None
            except ValueError:
                continue
        if k in ("point", "batch") and isinstance(v, float) and v.is_integer():
            v = int(v)
        r[k] = v
    return r


def iter_results(path, batch_rows: int = 65536):
    """The rows of a sweep result, one at a time (CSV read line by line, Parquet batch by
    batch): a report of 10^7 rows never holds them all."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            for r in batch.to_pylist():
                yield _typed_row(r)
        return
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            yield _typed_row(r)


def is_sweep_result(path) -> bool:
    path = Path(path)
    if path.suffix == ".parquet":
        return True
    if path.suffix != ".csv" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        head = f.readline()
    return head.startswith("point,model,batch,accelerator")


def _by_group(rows: list[dict]) -> dict:
    by_model: dict = {}
    for r in rows:
        if r.get("status") == "ok":
            by_model.setdefault(group_label(r), []).append(r)
    return by_model


def pareto(rows: list[dict]) -> dict:
    """Per model (and batch): the points no other point beats on both energy and latency."""
    return {model: front(rs) for model, rs in _by_group(rows).items()}


def top(rows: list[dict], k: int) -> dict:
    """Per model (and batch): the ``k`` points of lowest energy x latency."""
    return {m: sorted(rs, key=lambda r: float(r["edp_js"]))[:k] for m, rs in _by_group(rows).items()}
