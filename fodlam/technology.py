"""Process-technology scaling of published figures to a target node.

Rules (each maps (from_nm, to_nm) to (latency factor, power factor)):

* ``dennard``: the 2017 FODLAM's rule: delay ~ L, power ~ L^2 (s = to / from).
* ``stillmaker-baas`` / ``stillmaker-baas-lp``: the polynomial fits of Stillmaker & Baas
  (2017) for delay and power, evaluated at each node's nominal supply voltage
  (calibration/data/technology/), high-performance (or low-power) variants below 65 nm;
  nodes between tabulated ones are interpolated geometrically.
"""

from __future__ import annotations

import csv
import functools
import math

from ._paths import calibration_dir
from .errors import InputError


def dennard(from_nm: float, to_nm: float) -> tuple[float, float]:
    s = to_nm / from_nm
    return s, s * s


@functools.lru_cache(maxsize=None)
def _stillmaker_table(variant: str) -> list[tuple[float, float, float]]:
    """[(node, delay factor, power factor)] at nominal voltage, largest node first."""
    path = calibration_dir() / "data" / "technology" / "stillmaker-baas-2017.csv"
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["variant"] not in ("bulk", variant):
                continue
            v = float(r["nominal_vdd_v"])
            d = sum(float(r[f"delay_a{i}"]) * v ** i for i in range(4))
            p = sum(float(r[f"power_c{i}"]) * v ** i for i in range(3))
            out.append((float(r["node"]), d, p))
    return sorted(out, reverse=True)


def _stillmaker_at(node: float, variant: str) -> tuple[float, float]:
    table = _stillmaker_table(variant)
    nodes = [n for n, _, _ in table]
    if not nodes[-1] <= node <= nodes[0]:
        raise InputError(f"process node {node:g} nm is outside the Stillmaker-Baas range "
                         f"({nodes[-1]:g}-{nodes[0]:g} nm); use --scaling dennard")
    for (n1, d1, p1), (n2, d2, p2) in zip(table, table[1:]):
        if n2 <= node <= n1:
            if n1 == n2:
                return d1, p1
            w = math.log(n1 / node) / math.log(n1 / n2)
            return d1 ** (1 - w) * d2 ** w, p1 ** (1 - w) * p2 ** w
    return table[-1][1], table[-1][2]


def stillmaker(from_nm: float, to_nm: float, variant: str = "HP") -> tuple[float, float]:
    d0, p0 = _stillmaker_at(from_nm, variant)
    d1, p1 = _stillmaker_at(to_nm, variant)
    return d1 / d0, p1 / p0


RULES = {"dennard": dennard, "stillmaker-baas": lambda a, b: stillmaker(a, b, "HP"),
         "stillmaker-baas-lp": lambda a, b: stillmaker(a, b, "LP")}


def scale(rule: str, from_nm: float, to_nm: float) -> tuple[float, float]:
    """(latency factor, power factor) to move a measurement from ``from_nm`` to ``to_nm``."""
    if from_nm == to_nm:
        return 1.0, 1.0
    try:
        fn = RULES[rule]
    except KeyError:
        raise InputError(f"unknown technology scaling '{rule}'; choose {', '.join(RULES)}") from None
    return fn(from_nm, to_nm)
