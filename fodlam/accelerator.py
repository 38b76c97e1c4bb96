"""Accelerator profiles: TOML data files naming a cost model, a process node and sources."""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ._paths import calibration_dir
from .chip import OpRates, parse_array, parse_ports
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_ACCELERATOR = "eyeriss-eie-65nm"

#: process nodes a profile may be at or be rescaled to (nm)
NODE_RANGE = (1.0, 1000.0)


# ---- typed sections ----------------------------------------------------------------------
#
# Each TOML table of a profile is parsed once, when the profile loads, into a frozen
# dataclass: an unknown key, a value of the wrong type or out of its range, or a missing
# required field is a one-line ConfigError naming the file, the table and the key. Field
# metadata: ``kind`` is "int", "float", "str", "bool", "strs" (a list of strings), "ints"
# (a list of positive integers) or
# "table" (free-form); ``positive`` (> 0, the default for numbers) or ``min0`` (>= 0).

def _f(kind="float", default=None, *, min0=False):
    return field(default=default, metadata={"kind": kind, "min0": min0})


@dataclass(frozen=True)
class Architecture:
    """``[architecture]``: the hardware both cost models read. Systolic profiles
    (fodlam-roofline) use ``array_k``/``array_n``/``onchip_bytes``/``activations``/
    ``vector_width``; the row-stationary + sparse profile (fodlam-shape) uses
    ``pe_rows``/``pe_cols``/``fc_pes``/``fc_clock_mhz``."""

    clock_mhz: float | None = _f()
    bytes_per_element: float | None = _f()
    precisions: tuple | None = _f("ints")
    dram_bytes_per_s: float | None = _f()
    dram_provenance: str | None = _f("str")
    array_k: int | None = _f("int")
    array_n: int | None = _f("int")
    onchip_bytes: float | None = _f()
    activations: str | None = _f("str")
    vector_width: int | None = _f("int")
    pe_rows: int | None = _f("int")
    pe_cols: int | None = _f("int")
    fc_pes: int | None = _f("int")
    fc_clock_mhz: float | None = _f()
    # the sparse engine's weight SRAM: non-zero weights (one byte each: a 4-bit weight
    # index and a 4-bit zero-run) beyond it stream from DRAM on every pass
    fc_onchip_bytes: float | None = _f()
    # whole-chip mechanisms of the weight-stationary array (docs/model.md, "Around the array")
    weight_format: str | None = _f("str")       # "dense" (default) or "tiles": DRAM holds
                                                # weights as whole padded array tiles
    double_buffered: bool | None = _f("bool")   # the array holds a second weight tile
    shared_buffer: bool | None = _f("bool")     # weights and input data share onchip_bytes
    winograd: bool | None = _f("bool")          # 3x3 stride-1 convs as Winograd F(2x2, 3x3)

    def __post_init__(self):
        if self.activations not in (None, "streamed", "resident"):
            raise ValueError(f"activations must be 'streamed' or 'resident', not {self.activations!r}")
        if self.weight_format not in (None, "dense", "tiles"):
            raise ValueError(f"weight_format must be 'dense' or 'tiles', not {self.weight_format!r}")


@dataclass(frozen=True)
class Power:
    """``[power]``: measured chip power (W) at ``process_nm``."""

    idle_w: float = _f(min0=True)
    busy_w: float = _f()
    process_nm: float | None = _f()

    def __post_init__(self):
        if self.idle_w is not None and self.busy_w is not None and self.busy_w < self.idle_w:
            raise ValueError(f"busy_w = {self.busy_w:g} is below idle_w = {self.idle_w:g}")


@dataclass(frozen=True)
class Energy:
    """``[energy]``: per-operation energies (J) at ``process_nm``."""

    mac_j: float = _f()
    sram_j_per_byte: float = _f()
    dram_j_per_byte: float = _f()
    leakage_w: float = _f(default=0.0, min0=True)
    process_nm: float | None = _f()
    # energy beyond the datapath: clock tree, control and pipeline registers, per PE of the
    # array per cycle it runs, at its own node (the figure it is derived from)
    overhead_j_per_pe_cycle: float = _f(default=0.0, min0=True)
    overhead_process_nm: float | None = _f()
    provenance: str | None = _f("str")


#: what an output pipeline can absorb (``[pipeline] absorbs``), see ``fodlam/fusion.py``
PIPELINE_CLASSES = ("bias", "batchnorm", "activation", "lut", "add", "mul", "pool")


@dataclass(frozen=True)
class Pipeline:
    """``[pipeline]``: the post-processing a MAC layer's outputs flow through on their way
    out (NVDLA's SDP and PDP, TPU v1's activation unit): the op classes it absorbs, and the
    elements per cycle it processes (pooling at its own rate where it has one)."""

    absorbs: tuple = _f("strs")
    elements_per_cycle: float = _f()
    #: non-MAC classes whose own pass heads a chain (e.g. "add": a residual add, then its
    #: batch norm and ReLU, in one pass through the pipeline)
    chains_from: tuple = _f("strs", ())
    pool_elements_per_cycle: float | None = _f()
    op_j: float | None = _f()          # energy per absorbed operation (default: [energy] mac_j)
    provenance: str | None = _f("str")

    def __post_init__(self):
        bad = [a for a in tuple(self.absorbs) + tuple(self.chains_from) if a not in PIPELINE_CLASSES]
        if bad:
            raise ValueError(f"absorbs: unknown class(es) {', '.join(bad)}; known: "
                             f"{', '.join(PIPELINE_CLASSES)}")


@dataclass(frozen=True)
class PrecisionFigures:
    """``[precision."BITS"]``: array size and MAC energy for layers at that width."""

    array_k: int | None = _f("int")
    array_n: int | None = _f("int")
    mac_j: float | None = _f()


@dataclass(frozen=True)
class RooflineFigures:
    """``[roofline]``: the chip's peak rates, reported with every profile."""

    bytes_per_element: float | None = _f()
    peak_macs_per_s: float | None = _f()
    dram_bytes_per_s: float | None = _f()
    provenance: str | None = _f("str")


@dataclass(frozen=True)
class Dispatch:
    """``[dispatch]``: which engine runs each loop nest (fodlam-shape)."""

    rule: str = _f("str", "energy")
    says: str | None = _f("str")


@dataclass(frozen=True)
class ConvCoefficients:
    """``[shape_model.conv]``: the row-stationary array's fitted coefficients."""

    kappa: float = _f()
    q_cap: float = _f()
    eta: float = _f()
    glb_bytes_per_s: float = _f()
    dram_a: float = _f(min0=True)
    dram_b: float = _f(min0=True)
    p_array_w: float = _f(min0=True)
    e_glb_j_per_byte: float = _f(min0=True)
    e_io_j_per_byte: float = _f(min0=True)


@dataclass(frozen=True)
class FcCoefficients:
    """``[shape_model.fc]``: the sparse engine's fitted coefficients."""

    t0_s: float = _f(min0=True)
    cycles_scale: float = _f()
    power_w: float = _f(min0=True)


@dataclass(frozen=True)
class ShapeModel:
    """``[shape_model]``: coefficients fitted by ``fodlam calibrate`` at ``process_nm``;
    ``fit`` is the calibration's own report (free-form)."""

    process_nm: float | None = _f()
    conv: ConvCoefficients | None = _f("table")
    fc: FcCoefficients | None = _f("table")
    fit: dict | None = _f("table")


SECTIONS = {"architecture": Architecture, "power": Power, "energy": Energy,
            "roofline": RooflineFigures, "dispatch": Dispatch, "shape_model": ShapeModel,
            "pipeline": Pipeline, "ops": OpRates}
SUBSECTIONS = {("shape_model", "conv"): ConvCoefficients, ("shape_model", "fc"): FcCoefficients}


#: plausible physical ranges of a profile's numbers, by what a field measures (its name):
#: a value outside is not a figure of any chip, and would overflow or underflow a formula
#: (a bandwidth of 5e-324 B/s gives an infinite time). (lo, hi, what); docs/accelerators.md
#: lists them. Fields not listed take the last row: any finite magnitude in [1e-30, 1e30].
RANGES = (
    ("process_nm", 1.0, 1000.0, "a process node in nm"),
    ("bytes_per_element", 0.125, 16.0, "1 bit to 128 bits per element"),
    ("bytes_per_s", 1e3, 1e16, "1 kB/s to 10 PB/s"),
    ("macs_per_s", 1e3, 1e21, "1 kMAC/s to 1 ZMAC/s"),
    ("_mhz", 1e-3, 1e6, "1 kHz to 1 THz"),
    ("bytes", 1.0, 1e15, "1 B to 1 PB"),
    ("_j", 1e-20, 1e-3, "1e-20 J to 1 mJ per operation or byte"),
    ("j_per_byte", 1e-20, 1e-3, "1e-20 J to 1 mJ per byte"),
    ("_w", 1e-9, 1e6, "1 nW to 1 MW"),
    ("cycles", 1e-6, 1e12, "a cycle count"),
    ("per_cycle", 1e-9, 1e9, "a rate per cycle"),
    ("passes", 1.0, 1e4, "passes per element"),
    ("", 1e-30, 1e30, "a finite magnitude"),
)
_INT_RANGE = (1, 10 ** 9, "a count")
_OPS_RATES = ("add", "mul", "activation", "lut", "pool", "softmax", "norm", "reduce", "data", "other")


def plausible_range(name: str | None, kind: str) -> tuple:
    """(lo, hi, what) for a numeric field ``name``."""
    if kind == "int":
        return _INT_RANGE
    name = name or ""
    if name in _OPS_RATES:
        return next(r[1:] for r in RANGES if r[0] == "per_cycle")
    for key, lo, hi, what in RANGES:
        if key and (name == key or name.endswith(key) or key in name):
            return lo, hi, what
    return RANGES[-1][1:]


def _value(kind: str, value, min0: bool, where: str, name: str | None = None):
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, not {value!r}")
        return tuple(value)
    if kind == "ints":
        if not isinstance(value, list) or not value or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ConfigError(f"{where} must be a list of positive integers, not {value!r}")
        return tuple(value)
    if kind == "table":
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{where} must be a finite number, not {value!r}")
    if kind == "int" and not float(value).is_integer():
        raise ConfigError(f"{where} must be a whole number, not {value!r}")
    if value < 0 or (value == 0 and not min0):
        raise ConfigError(f"{where} = {value!r} must be {'non-negative' if min0 else 'positive'}")
    if value != 0:
        lo, hi, what = plausible_range(name if name is not None else where.rsplit(" ", 1)[-1], kind)
        if not lo <= value <= hi:
            raise ConfigError(f"{where} = {value!r} is outside its plausible range [{lo:g}, {hi:g}] "
                              f"({what}); no chip has it, and the formulas would overflow or "
                              "underflow: check the figure and its unit")
    return int(value) if kind == "int" else value


def parse_section(cls, table, where: str):
    """A TOML table as the frozen dataclass ``cls``, validated (``where`` names the file
    and table in errors)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    values = {}
    for name, f in known.items():
        if name not in table:
            if f.default is None and f.metadata["kind"] != "table" and \
                    not (f.type.endswith("None") if isinstance(f.type, str) else False):
                raise ConfigError(f"{where} lacks {name}")
            continue
        values[name] = _value(f.metadata["kind"], table[name], f.metadata["min0"], f"{where} {name}")
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _sections(params: dict, label: str) -> dict:
    """Every table of a profile parsed into its typed section (None where absent)."""
    out = {}
    for key, cls in SECTIONS.items():
        table = params.get(key)
        if table is None:
            out[key] = None
            continue
        if cls is ShapeModel:
            if not isinstance(table, dict):
                raise ConfigError(f"{label} [shape_model] must be a table")
            sub = {k: parse_section(SUBSECTIONS["shape_model", k], v, f"{label} [shape_model.{k}]")
                   for k, v in table.items() if k in ("conv", "fc")}
            top = parse_section(ShapeModel, table, f"{label} [shape_model]")
            out[key] = replace(top, **sub)
        else:
            out[key] = parse_section(cls, table, f"{label} [{key}]")
    precision = params.get("precision")
    if precision is not None:
        if not isinstance(precision, dict):
            raise ConfigError(f"{label} [precision] must hold tables like [precision.\"16\"]")
        for bits in precision:
            if not str(bits).isdigit() or int(bits) <= 0:
                raise ConfigError(f"{label} [precision.{bits!r}]: name a width in bits, e.g. "
                                  "[precision.\"16\"]")
        out["precision"] = {str(b): parse_section(PrecisionFigures, v, f"{label} [precision.\"{b}\"]")
                            for b, v in precision.items()}
    else:
        out["precision"] = {}
    # what a chip the user brings declares (fodlam/chip.py): its array's unrollings, ports
    array = params.get("array")
    out["array"] = parse_array(array, f"{label} [array]", parse_section) if array is not None else None
    ports = params.get("ports")
    out["ports"] = parse_ports(ports, f"{label} [[ports]]", parse_section) if ports is not None else ()
    return out


TOP_KEYS = ("name", "description", "cost_model", "process_nm", "technology_scaling", "sources",
            *SECTIONS, "precision", "array", "ports")


def check_node(node, where: str) -> float:
    """A process node in nm, within ``NODE_RANGE``, else a one-line ConfigError."""
    lo, hi = NODE_RANGE
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not lo <= node <= hi:
        raise ConfigError(f"{where}: process node {node!r} nm is out of range; give a node between "
                          f"{lo:g} and {hi:g} nm, e.g. 28")
    return float(node)


@dataclass(frozen=True)
class Accelerator:
    """An accelerator profile: what it is (name, cost model, process node, sources), its
    raw tables (``params``, as written, for reports and sweeps) and the same tables typed
    and validated (``architecture``, ``power``, ``energy``, ``roofline``, ``dispatch``,
    ``shape_model``, ``precision``), which the engines read."""

    name: str
    description: str
    cost_model: str
    process_nm: float
    technology_scaling: str = "dennard"
    sources: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    path: str | None = None
    architecture: Architecture | None = field(default=None, init=False, compare=False, repr=False)
    power: Power | None = field(default=None, init=False, compare=False, repr=False)
    energy: Energy | None = field(default=None, init=False, compare=False, repr=False)
    roofline: RooflineFigures | None = field(default=None, init=False, compare=False, repr=False)
    dispatch: Dispatch | None = field(default=None, init=False, compare=False, repr=False)
    shape_model: ShapeModel | None = field(default=None, init=False, compare=False, repr=False)
    pipeline: Pipeline | None = field(default=None, init=False, compare=False, repr=False)
    ops: OpRates | None = field(default=None, init=False, compare=False, repr=False)
    precision: dict = field(default_factory=dict, init=False, compare=False, repr=False)
    array: object = field(default=None, init=False, compare=False, repr=False)   # chip.ArraySpec
    ports: tuple = field(default=(), init=False, compare=False, repr=False)      # chip.Port, ...

    def __post_init__(self):
        from .technology import RULES

        label = f"accelerator profile {self.path or self.name}"
        check_node(self.process_nm, f"{label} process_nm")
        if self.technology_scaling not in RULES:
            raise ConfigError(f"{label}: technology_scaling {self.technology_scaling!r} is not one of "
                              f"{', '.join(RULES)}")
        for key, value in _sections(self.params, label).items():
            object.__setattr__(self, key, value)

    def at_node(self, node_nm: float, rule: str | None = None) -> "Accelerator":
        from .technology import RULES

        node_nm = check_node(node_nm, f"rescaling {self.name}")
        rule = rule or self.technology_scaling
        if rule not in RULES:
            raise ConfigError(f"rescaling {self.name}: technology scaling {rule!r} is not one of "
                              f"{', '.join(RULES)}")
        out = copy.copy(self)             # the tables are unchanged: nothing to parse again
        for key, value in (("process_nm", float(node_nm)), ("technology_scaling", rule),
                           ("name", f"{self.name}@{node_nm:g}nm")):
            object.__setattr__(out, key, value)
        return out

    def with_overrides(self, params: dict, changes: dict, name: str) -> "Accelerator":
        """A copy with new ``params`` whose typed sections differ only by ``changes``
        (``{"architecture": {"clock_mhz": 800}, "shape_model.conv": {...}}``): each changed
        value is validated as loading would validate it, every other section is shared
        (sweeps derive millions of variants this way)."""
        label = f"accelerator profile {self.path or self.name}"
        out = copy.copy(self)
        object.__setattr__(out, "params", params)
        object.__setattr__(out, "name", name)
        for table, values in changes.items():
            top, _, sub = table.partition(".")
            owner = getattr(self, top, None) if top in SECTIONS else None
            section = getattr(owner, sub, None) if sub and owner is not None else owner
            if section is None or (sub and top != "shape_model"):
                parsed = _sections({top: params.get(top)}, label)     # no typed section yet
                object.__setattr__(out, top, parsed[top])
                continue
            kinds = {f.name: f for f in fields(section)}
            where = f"{label} [{table}]"
            checked = {}
            for key, value in values.items():
                if key not in kinds:
                    raise ConfigError(f"{where}: unknown key {key}; known: {', '.join(kinds)}")
                f = kinds[key]
                checked[key] = _value(f.metadata["kind"], value, f.metadata["min0"], f"{where} {key}")
            try:
                new = replace(section, **checked)
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from None
            object.__setattr__(out, top, replace(owner, **{sub: new}) if sub else new)
        return out

    def to_dict(self) -> dict:
        out = {"name": self.name, "description": self.description,
               "cost_model": self.cost_model, "process_nm": self.process_nm,
               "technology_scaling": self.technology_scaling, "sources": dict(self.sources)}
        roof = self.params.get("roofline", {})
        for key in ("bytes_per_element", "peak_macs_per_s", "dram_bytes_per_s"):
            if key in roof:
                out[key] = roof[key]
        if self.path:
            out["path"] = self.path
        return out


def _accelerators_dir() -> Path:
    return calibration_dir() / "accelerators"


def bundled() -> list[str]:
    return sorted(p.stem for p in _accelerators_dir().glob("*.toml"))


def read_toml(path: Path, what: str = "") -> dict:
    """A TOML file as a dict; unreadable or malformed files are one-line ConfigErrors."""
    label = f"{what} {path}".strip()
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {label}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{label} is not valid TOML: {' '.join(str(e).split())}") from None


def _from_toml(path: Path) -> Accelerator:
    """The profile in a TOML file; parsed once per file version (path, size, mtime): an
    Accelerator is immutable, so a sweep or a benchmark that loads it again shares it."""
    try:
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None:
        hit = _PARSED.get(key)
        if hit is not None:
            return hit
    acc = _parse_toml(path)
    if key is not None:
        if len(_PARSED) > 64:
            _PARSED.clear()
        _PARSED[key] = acc
    return acc


_PARSED: dict = {}


def _parse_toml(path: Path) -> Accelerator:
    data = read_toml(path, "accelerator profile")
    missing = [k for k in ("name", "cost_model", "process_nm") if k not in data]
    if missing:
        raise ConfigError(f"accelerator profile {path} lacks {', '.join(missing)}; "
                          f"see calibration/accelerators/ for examples")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"accelerator profile {path}: unknown key(s) or table(s) "
                          f"{', '.join(unknown)}; known: {', '.join(TOP_KEYS)}")
    node = data["process_nm"]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise ConfigError(f"accelerator profile {path}: process_nm must be a number")
    for key in ("name", "cost_model", "description", "technology_scaling"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"accelerator profile {path}: {key} must be a string")
    sources = data.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise ConfigError(f"accelerator profile {path}: [sources] holds strings (paper, table, row)")
    top = {"name", "description", "cost_model", "process_nm", "technology_scaling", "sources"}
    return Accelerator(name=data["name"], description=data.get("description", ""),
                       cost_model=data["cost_model"], process_nm=float(node),
                       technology_scaling=data.get("technology_scaling", "dennard"),
                       sources=dict(sources),
                       params={k: v for k, v in data.items() if k not in top}, path=str(path))


def resolve(spec=None, node=None, rule=None) -> Accelerator:
    """``load_accelerator(spec)``, rescaled to process ``node`` (nm) with scaling ``rule``
    where either is given."""
    acc = load_accelerator(spec)
    if node is not None or rule is not None:
        acc = acc.at_node(float(node) if node is not None else acc.process_nm, rule)
    return acc


def load_accelerator(spec: "str | Path | Accelerator | None" = None) -> Accelerator:
    """An accelerator by bundled name (``fodlam profiles`` lists them), by TOML path, or
    the default (``eyeriss-eie-65nm``) when ``spec`` is None."""
    if isinstance(spec, Accelerator):
        return spec
    if spec is not None and not isinstance(spec, (str, Path)):
        raise ConfigError(f"accelerator {spec!r}: give a bundled profile name ('fodlam profiles' "
                          "lists them), the path of a .toml profile, or an Accelerator")
    spec = DEFAULT_ACCELERATOR if spec is None else spec
    path = Path(spec)
    text = str(spec)
    # a bundled name means the bundled profile, whatever the working folder holds: a folder
    # of that name is no profile, and a file of that name must be given as a path (./NAME)
    pathlike = text.endswith(".toml") or os.sep in text or "/" in text or text.startswith(".")
    candidate = _accelerators_dir() / f"{text}.toml"
    if not pathlike and candidate.is_file():
        if path.is_file():
            raise ConfigError(f"'{text}' names both the bundled profile and the file {text} in "
                              f"this folder: give the file as a path (./{text}) to use it, or "
                              "rename it")
        return _from_toml(candidate)
    if path.suffix == ".toml" or path.exists() or pathlike:
        if not path.is_file():
            raise ConfigError(f"accelerator profile {path} not found")
        return _from_toml(path)
    raise ConfigError(f"unknown accelerator '{spec}'; bundled: {', '.join(bundled())}, "
                      "or give the path of a .toml profile")
