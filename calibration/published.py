"""Published measurements and the code that reads them (``fodlam.calibration.published``).

Nothing here knows about torch or ONNX. Loaders return plain dataclasses with SI units
(seconds, watts, joules); conversion from the published units happens here and only here.
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import fodlam.layers as L
from fodlam.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"
NETS_DIR = DATA_DIR / "nets"
ACCELERATORS_DIR = Path(__file__).resolve().parent / "accelerators"

#: Bundled 2017 MAC files of the two reference networks (the 2017 tool's averages use them).
REFERENCE_NETFILES = {"AlexNet": "alexnet_deploy.json", "VGG16": "VGG_ILSVRC_16_layers_deploy.json"}


def norm_layer_name(name: str) -> str:
    """The 2017 normalisation: upper case, '_' -> '-' (``conv1_1`` matches ``CONV1-1``)."""
    return str(name).upper().replace("_", "-")


@dataclass(frozen=True)
class Measurement:
    """One published per-layer measurement, in SI units, as measured (whole batch)."""

    network: str          # "AlexNet" or "VGG16"
    name: str             # normalised layer name, e.g. "CONV1-1"
    kind: str             # "conv" or "fc"
    layer: L.Layer        # canonical layer for ONE image (batch 1)
    batch: int            # images per measurement
    process_nm: float
    latency_s: float      # whole batch, as published (EIE: at its own 45 nm)
    power_w: float | None  # per-layer power where published (Eyeriss); None for EIE
    source: str
    table: str
    row: str
    extra: dict           # other published columns (accesses, PEs, zeros, densities...)

    @property
    def provenance(self) -> str:
        return f"{self.source} {self.table}, row {self.row}"


def _float(row: dict, key: str, path: Path) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path.name}: row {row.get('layer', '?')} has no numeric '{key}'") from None


@functools.lru_cache(maxsize=None)
def eyeriss() -> tuple[Measurement, ...]:
    path = DATA_DIR / "eyeriss.csv"
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            kernel, stride, pad = (int(row[k]) for k in ("kernel", "stride", "pad"))
            layer = L.conv(1, int(row["in_channels"]), int(row["out_channels"]),
                           (int(row["in_h"]), int(row["in_w"])), kernel, stride, pad,
                           groups=int(row["groups"]))
            if layer.out_size != (int(row["out_h"]), int(row["out_w"])):
                raise ConfigError(f"{path.name}: {row['layer']} shape gives output "
                                  f"{layer.out_size}, the table says {row['out_h']}x{row['out_w']}")
            extra = {k: _float(row, k, path) for k in (
                "processing_latency_ms", "macs_g_per_batch", "active_pes", "ifmap_zeros_pct",
                "glb_accesses_mb", "dram_accesses_mb", "clock_mhz")}
            out.append(Measurement(
                network=row["network"], name=norm_layer_name(row["layer"]), kind="conv",
                layer=layer, batch=int(row["batch"]), process_nm=_float(row, "process_nm", path),
                latency_s=_float(row, "total_latency_ms", path) * 1e-3,
                power_w=_float(row, "power_mw", path) * 1e-3,
                source=row["source"], table=row["table"], row=row["row"], extra=extra))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def eie() -> tuple[Measurement, ...]:
    path = DATA_DIR / "eie.csv"
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            layer = L.fc(1, int(row["in_features"]), int(row["out_features"]),
                         weight_density=_float(row, "weight_density", path),
                         activation_density=_float(row, "activation_density", path))
            extra = {"theoretical_time_s": _float(row, "theoretical_time_us", path) * 1e-6,
                     "clock_mhz": _float(row, "clock_mhz", path),
                     "density_table": row["density_table"]}
            out.append(Measurement(
                network=row["network"], name=norm_layer_name(row["layer"]), kind="fc",
                layer=layer, batch=int(row["batch"]), process_nm=_float(row, "process_nm", path),
                latency_s=_float(row, "actual_time_us", path) * 1e-6, power_w=None,
                source=row["source"], table=row["table"], row=row["row"], extra=extra))
    return tuple(out)


def measurements() -> tuple[Measurement, ...]:
    """All 24 reference layers: 18 Eyeriss conv, 6 EIE fc."""
    return eyeriss() + eie()


@dataclass(frozen=True)
class ChipFigure:
    chip: str
    quantity: str
    value: float
    unit: str
    process_nm: float
    source: str
    table: str
    row: str


@functools.lru_cache(maxsize=None)
def chips() -> dict[tuple[str, str], ChipFigure]:
    path = DATA_DIR / "chips.csv"
    with open(path, newline="") as f:
        return {(r["chip"], r["quantity"]): ChipFigure(
            r["chip"], r["quantity"], float(r["value"]), r["unit"], float(r["process_nm"]),
            r["source"], r["table"], r["row"]) for r in csv.DictReader(f)}


def chip_figure(chip: str, quantity: str) -> ChipFigure:
    return chips()[chip, quantity]


# ---- 2017 per-layer MAC files ("netfiles") ---------------------------------------------

@dataclass(frozen=True)
class NetLayer:
    name: str          # as written in the file
    type: str          # Caffe layer type
    macs: int | None   # per image; None for layers without a MAC count


#: Caffe layer types and the FODLAM kind they are costed as (2017 semantics).
CAFFE_KINDS = {"Convolution": "conv", "Deconvolution": "conv", "InnerProduct": "fc"}


def bundled_netfiles() -> list[str]:
    return sorted(p.name for p in NETS_DIR.glob("*.json"))


def load_netfile(path: Path) -> list[NetLayer]:
    """Read a per-layer MAC file: a JSON list of {name, type, macs?}."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read netfile {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"netfile {path} is not UTF-8 text; it should be a JSON list of "
                          "{name, type, macs} objects") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"netfile {path} is not valid JSON: {e.msg} at line {e.lineno} "
                          f"column {e.colno}") from None
    if isinstance(data, dict) and isinstance(data.get("layers"), list):
        data = data["layers"]
    if not isinstance(data, list):
        raise ConfigError(f"netfile {path} must be a JSON list of {{name, type, macs}} objects")
    out = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"netfile {path}: entry {i} must be an object with a string 'name'")
        macs = entry.get("macs")
        if macs is not None and (isinstance(macs, bool) or not isinstance(macs, (int, float))
                                 or macs < 0 or macs != macs):
            raise ConfigError(f"netfile {path}: layer '{entry['name']}' has an invalid "
                              f"'macs' value {macs!r}; it must be a non-negative number")
        out.append(NetLayer(entry["name"], str(entry.get("type", "")),
                            None if macs is None else int(macs)))
    return out


@functools.lru_cache(maxsize=None)
def reference_net_macs() -> dict[tuple[str, str], NetLayer]:
    """MACs per image of the reference networks' layers, keyed (network, NORMALISED-NAME)."""
    out = {}
    for network, filename in REFERENCE_NETFILES.items():
        for layer in load_netfile(NETS_DIR / filename):
            if layer.macs is not None:
                out[network, norm_layer_name(layer.name)] = layer
    return out
