"""Fitting the shape-aware model, and the leave-one-out / cross-network report.

Pure Python (no NumPy/SciPy): a handful of coefficients, fitted by grid search for the
non-linear ones and by exact non-negative least squares (enumerating active sets) for the
linear ones, on relative errors so small and large layers weigh alike.

Data rows come from the bundled published tables or from a user CSV (``read_csv``; the
format is documented in ``calibration/data/README.md`` and the README).
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from fodlam import layers as L
from fodlam import technology
from fodlam.accelerator import Architecture, parse_section
from fodlam.errors import ConfigError
from fodlam import engines as EN
from fodlam.nest import nests

from .published import chip_figure, eie, eyeriss


@dataclass
class Row:
    """One measured layer, in SI units, for the whole measured batch."""

    kind: str                      # "conv" or "fc"
    layer: L.Layer                 # canonical layer at the measured batch
    latency_s: float               # total latency
    energy_j: float
    network: str = ""
    name: str = ""
    processing_s: float | None = None
    glb_bytes: float | None = None
    dram_bytes: float | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.layer.batch


# ---- data --------------------------------------------------------------------------------

def bundled_rows(target_nm: float = 65.0, rule: str = "dennard") -> list[Row]:
    """The 18 Eyeriss conv and 6 EIE fc measurements, moved to ``target_nm``."""
    rows = []
    for m in eyeriss():
        t, p = technology.scale(rule, m.process_nm, target_nm)
        lat = m.latency_s * t
        rows.append(Row("conv", replace(m.layer, batch=m.batch), lat, lat * m.power_w * p,
                        m.network, m.name,
                        processing_s=m.extra["processing_latency_ms"] * 1e-3 * t,
                        glb_bytes=m.extra["glb_accesses_mb"] * 1e6,
                        dram_bytes=m.extra["dram_accesses_mb"] * 1e6, source=m.provenance))
    power = chip_figure("eie", "total_power").value
    for m in eie():
        t, p = technology.scale(rule, m.process_nm, target_nm)
        lat = m.latency_s * t
        rows.append(Row("fc", m.layer, lat, lat * power * p, m.network, m.name,
                        source=m.provenance))
    return rows


def _num(row: dict, *keys, required=True, where=""):
    for k in keys:
        v = row.get(k)
        if v not in (None, ""):
            try:
                x = float(v)
            except ValueError:
                raise ConfigError(f"{where}: column '{k}' is not a number ({v!r})") from None
            if not math.isfinite(x) or x < 0:
                raise ConfigError(f"{where}: column '{k}' must be a finite non-negative number")
            return x
    if required:
        raise ConfigError(f"{where}: missing a value for {' or '.join(keys)}")
    return None


def read_csv(path, target_nm: float | None = None, rule: str = "dennard") -> list[Row]:
    """A user's measurements. One row per layer; see the README for the columns."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"calibration data {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read calibration data {path}: {e}") from None
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "kind" not in reader.fieldnames and "in_channels" not in reader.fieldnames:
        raise ConfigError(f"{path}: expected a header with at least 'kind', the shape columns, "
                          "'batch', a latency and a power or energy column (see the README)")
    rows = []
    for i, raw in enumerate(reader, start=2):
        where = f"{p.name} line {i}"
        kind = (raw.get("kind") or ("fc" if raw.get("in_features") else "conv")).strip().lower()
        batch = int(_num(raw, "batch", required=False, where=where) or 1)
        if batch <= 0:
            raise ConfigError(f"{where}: batch must be positive")
        try:
            if kind == "conv":
                layer = L.conv(batch, int(_num(raw, "in_channels", where=where)),
                               int(_num(raw, "out_channels", where=where)),
                               (int(_num(raw, "in_h", where=where)), int(_num(raw, "in_w", where=where))),
                               int(_num(raw, "kernel", where=where)),
                               int(_num(raw, "stride", required=False, where=where) or 1),
                               int(_num(raw, "pad", required=False, where=where) or 0),
                               groups=int(_num(raw, "groups", required=False, where=where) or 1))
            elif kind == "fc":
                layer = L.fc(batch, int(_num(raw, "in_features", where=where)),
                             int(_num(raw, "out_features", where=where)),
                             weight_density=_num(raw, "weight_density", required=False, where=where) or 1.0,
                             activation_density=_num(raw, "activation_density", required=False, where=where) or 1.0)
            else:
                raise ConfigError(f"{where}: kind must be conv or fc, not {kind!r}")
        except Exception as e:  # LayerError and friends
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{where}: {e}") from None
        lat = _num(raw, "latency_s", required=False, where=where)
        if lat is None:
            ms = _num(raw, "latency_ms", "total_latency_ms", required=False, where=where)
            us = _num(raw, "latency_us", "actual_time_us", required=False, where=where)
            lat = ms * 1e-3 if ms is not None else (us * 1e-6 if us is not None else None)
        if not lat:
            raise ConfigError(f"{where}: give a positive latency (latency_ms, latency_us or latency_s)")
        energy = _num(raw, "energy_j", required=False, where=where)
        if energy is None:
            mj = _num(raw, "energy_mj", required=False, where=where)
            mw = _num(raw, "power_mw", required=False, where=where)
            w = _num(raw, "power_w", required=False, where=where)
            energy = mj * 1e-3 if mj is not None else (
                lat * mw * 1e-3 if mw is not None else (lat * w if w is not None else None))
        if not energy:
            raise ConfigError(f"{where}: give a positive energy (energy_mj / energy_j) or power (power_mw / power_w)")
        node = _num(raw, "process_nm", required=False, where=where)
        if node is not None and not 1 <= node <= 1000:
            raise ConfigError(f"{where}: process_nm {node:g} is out of range; give the node in nm "
                              "(1 to 1000), e.g. 65")
        t = pw = 1.0
        if node and target_nm and node != target_nm:
            t, pw = technology.scale(rule, node, target_nm)
        proc = _num(raw, "processing_latency_ms", required=False, where=where)
        glb = _num(raw, "glb_accesses_mb", required=False, where=where)
        dram = _num(raw, "dram_accesses_mb", required=False, where=where)
        rows.append(Row(kind, layer, lat * t, energy * t * pw, raw.get("network", ""),
                        raw.get("layer", f"row{i}"),
                        processing_s=proc * 1e-3 * t if proc else None,
                        glb_bytes=glb * 1e6 if glb else None, dram_bytes=dram * 1e6 if dram else None,
                        source=raw.get("source", str(p.name))))
    if not rows:
        raise ConfigError(f"{path} has no data rows")
    return rows


# ---- non-negative least squares, exact for a few variables -----------------------------------

def _solve(A, b):
    """Least squares via the normal equations (n <= 5); None if singular."""
    n = len(A[0])
    M = [[sum(r[i] * r[j] for r in A) for j in range(n)] for i in range(n)]
    v = [sum(r[i] * y for r, y in zip(A, b)) for i in range(n)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(M[r][col]))
        if abs(M[piv][col]) < 1e-300:
            return None
        M[col], M[piv] = M[piv], M[col]
        v[col], v[piv] = v[piv], v[col]
        for r in range(n):
            if r != col:
                f = M[r][col] / M[col][col]
                M[r] = [a - f * c for a, c in zip(M[r], M[col])]
                v[r] -= f * v[col]
    return [v[i] / M[i][i] for i in range(n)]


def nnls(A, b):
    n = len(A[0])
    best, best_x = float("inf"), [0.0] * n
    for k in range(1, n + 1):
        for subset in itertools.combinations(range(n), k):
            sub = [[r[i] for i in subset] for r in A]
            x = _solve(sub, b)
            if x is None or any(xi < 0 for xi in x):
                continue
            full = [0.0] * n
            for i, xi in zip(subset, x):
                full[i] = xi
            res = sum((sum(r[i] * full[i] for i in range(n)) - y) ** 2 for r, y in zip(A, b))
            if res < best - 1e-30:
                best, best_x = res, full
    return best_x


# ---- fitting ------------------------------------------------------------------------------

def _conv_geo(row):
    """The loop nest of a measured conv layer."""
    return nests(row.layer)[0]


def _arch(arch) -> Architecture:
    """The profile's [architecture] (a table as written, or already typed), typed."""
    if isinstance(arch, Architecture):
        return arch
    return parse_section(Architecture, arch, "[architecture]")


def _dram_bw(arch: Architecture):
    v = arch.dram_bytes_per_s
    return float(v) if v else None


def _rs_latency(f: dict, c: dict, dram_bw):
    return EN.rs_latency(f, c["eta"], c["glb_bytes_per_s"], c["dram_a"], c["dram_b"], dram_bw)


#: the (kappa, q_cap) pairs that go on from step 1 of ``fit_conv`` to the time fit
MAX_TILE_CANDIDATES = 64


def fit_conv(rows: list[Row], arch: dict, base: dict | None = None) -> dict:
    base = dict(base or {})
    if len(rows) >= 2 and len({(nests(r.layer)[0], r.batch) for r in rows}) < 2:
        raise ConfigError(f"the {len(rows)} conv rows all describe the same layer: they cannot "
                          "identify the model's coefficients; give measurements of at least two "
                          "different layers")
    arch = _arch(arch)
    geos = [_conv_geo(r) for r in rows]
    # 1. channel tile from measured buffer accesses, where published: every (kappa, q_cap)
    #    whose traffic error is within 10% of the best stays a candidate
    with_glb = [(g, r) for g, r in zip(geos, rows) if r.glb_bytes]
    if with_glb:
        scored = []
        for kappa in (100 * 1.02 ** i for i in range(187)):
            for q_cap in (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32):
                err = sum(abs(EN.rs_features(g, arch, kappa, q_cap)["glb"] - r.glb_bytes) / r.glb_bytes
                          for g, r in with_glb) / len(with_glb)
                scored.append((err, round(kappa, 3), float(q_cap)))
        floor = min(e for e, _, _ in scored)
        # bounded: at most MAX_TILE_CANDIDATES go on to the time fit (the bundled data keep
        # at most 9); data that tie more of them identify the tile no better
        candidates = sorted(c for c in scored if c[0] <= floor * 1.1 + 1e-12)[:MAX_TILE_CANDIDATES]
    else:
        candidates = [(0.0, float(base.get("kappa", 1000)), float(base.get("q_cap", 7)))]
    # 2. compute efficiency and buffer bandwidth (bandwidth >= the highest observed), and
    #    the candidate tile whose traffic and processing times fit best together
    target = [r.processing_s or r.latency_s for r in rows]
    best = None
    n = len(rows)
    for glb_err, kappa, q_cap in candidates:
        feats = [EN.rs_features(g, arch, kappa, q_cap) for g in geos]
        bw_min = max((r.glb_bytes or f["glb"]) / t for r, f, t in zip(rows, feats, target))
        # relative error of max(tc / eta, glb / bw) against the measured time, per row
        tcs = [f["tc"] / t for f, t in zip(feats, target)]
        glbs = [f["glb"] / t for f, t in zip(feats, target)]
        for j in range(101):
            bw = bw_min * (1 + j * 0.01)
            buf = [g / bw for g in glbs]
            for i in range(101):
                eta = 0.5 + 0.005 * i
                err = sum(abs((c / eta if c / eta > b else b) - 1.0) for c, b in zip(tcs, buf)) / n + glb_err
                if best is None or err < best[0] - 1e-12:
                    best = (err, eta, bw, kappa, q_cap)
    _, eta, bw, kappa, q_cap = best
    feats = [EN.rs_features(g, arch, kappa, q_cap) for g in geos]
    proc = [max(f["tc"] / eta, f["glb"] / bw) for f in feats]
    # 3. DRAM time not hidden behind processing
    if all(r.processing_s for r in rows):
        A = [[p / r.latency_s, f["ofm"] / r.latency_s] for p, f, r in zip(proc, feats, rows)]
        b = [(r.latency_s - p) / r.latency_s for p, r in zip(proc, rows)]
        dram_a, dram_b = nnls(A, b)
    else:
        dram_a = dram_b = 0.0
    coeffs = dict(kappa=kappa, q_cap=q_cap, eta=eta, glb_bytes_per_s=bw, dram_a=dram_a, dram_b=dram_b)
    # 4. energy by component
    totals = [_rs_latency(f, coeffs, _dram_bw(arch))[1] for f in feats]
    A = [[x / r.energy_j for x in EN.rs_energy_terms(f, t)] for f, t, r in zip(feats, totals, rows)]
    coeffs.update(zip(EN.RS_ENERGY_KEYS, nnls(A, [1.0] * len(rows))))
    return coeffs


def fit_fc(rows: list[Row], arch: dict, base: dict | None = None) -> dict:
    base = dict(base or {})
    if len(rows) < 3:
        if not base:
            raise ConfigError("at least 3 fc rows are needed to fit the fc model (or give a base profile)")
        return base
    arch = _arch(arch)
    feats = [EN.sparse_features(nests(r.layer)[0], arch) for r in rows]
    A = [[f["vectors"] / r.latency_s, f["vectors"] * f["cycles"] / f["clock_hz"] / r.latency_s]
         for f, r in zip(feats, rows)]
    t0, k = nnls(A, [1.0] * len(rows))
    power = sum(r.energy_j for r in rows) / sum(r.latency_s for r in rows)
    return dict(t0_s=t0, cycles_scale=k, power_w=power)


def predict(row: Row, arch: dict, conv: dict, fc: dict) -> tuple[float, float]:
    """(latency_s, energy_j) of a row's layer at its measured batch."""
    a = _arch(arch)
    if row.kind == "conv":
        f = EN.rs_features(_conv_geo(row), a, conv["kappa"], conv["q_cap"])
        _, t = _rs_latency(f, conv, _dram_bw(a))
        e = sum(x * conv[k] for x, k in zip(EN.rs_energy_terms(f, t), EN.RS_ENERGY_KEYS))
        return t, e
    t = EN.sparse_latency(EN.sparse_features(nests(row.layer)[0], a), fc["t0_s"], fc["cycles_scale"])
    return t, t * fc["power_w"]


def per_mac_predict(train: list[Row], row: Row) -> tuple[float, float]:
    """The 2017 rule on the same data: MACs x sum(cost) / sum(MACs) of the training rows."""
    macs = sum(r.layer.macs for r in train)
    return (row.layer.macs * sum(r.latency_s for r in train) / macs,
            row.layer.macs * sum(r.energy_j for r in train) / macs)


@dataclass
class Fit:
    arch: dict
    conv: dict
    fc: dict
    info: dict


def fit_all(rows: list[Row], arch: dict, base_conv=None, base_fc=None) -> Fit:
    conv_rows = [r for r in rows if r.kind == "conv"]
    fc_rows = [r for r in rows if r.kind == "fc"]
    if not conv_rows and not base_conv:
        raise ConfigError("no conv rows to fit and no base profile to start from")
    conv = fit_conv(conv_rows, arch, base_conv) if conv_rows else dict(base_conv)
    fc = fit_fc(fc_rows, arch, base_fc) if fc_rows or base_fc else {}
    return Fit(arch, conv, fc, {})


def _errors(pairs):
    errs = [abs(p - m) / m for p, m in pairs]
    return {"mean": sum(errs) / len(errs), "max": max(errs)} if errs else {"mean": None, "max": None}


def evaluate(rows: list[Row], arch: dict, base_conv=None, base_fc=None) -> dict:
    """In-sample fit, leave-one-out per kind (new model and per-MAC), cross-network totals."""
    out = {"layers": [], "loo": {}, "cross_network": {}}
    full = fit_all(rows, arch, base_conv, base_fc)
    for kind in ("conv", "fc"):
        krows = [r for r in rows if r.kind == kind]
        if len(krows) < 3:
            continue
        loo_new, loo_mac, ratios = [], [], {"latency": [], "energy": []}
        for i, r in enumerate(krows):
            train = krows[:i] + krows[i + 1:]
            if kind == "conv":
                conv = fit_conv(train, arch, base_conv)
                t, e = predict(r, arch, conv, full.fc)
            else:
                fc = fit_fc(train, arch, base_fc)
                t, e = predict(r, arch, full.conv, fc)
            tm, em = per_mac_predict(train, r)
            loo_new.append((r, t, e))
            loo_mac.append((r, tm, em))
            ratios["latency"].append(r.latency_s / t)
            ratios["energy"].append(r.energy_j / e)
        out["loo"][kind] = {
            "new": {"latency": _errors([(t, r.latency_s) for r, t, _ in loo_new]),
                    "energy": _errors([(e, r.energy_j) for r, _, e in loo_new])},
            "per_mac": {"latency": _errors([(t, r.latency_s) for r, t, _ in loo_mac]),
                        "energy": _errors([(e, r.energy_j) for r, _, e in loo_mac])},
            "ratio_range": {m: [min(v), max(v)] for m, v in ratios.items()},
            "layers": [{"network": r.network, "layer": r.name, "latency_s": r.latency_s,
                        "energy_j": r.energy_j, "loo_latency_s": t, "loo_energy_j": e,
                        "per_mac_latency_s": tm, "per_mac_energy_j": em}
                       for (r, t, e), (_, tm, em) in zip(loo_new, loo_mac)]}
    for r in rows:
        t, e = predict(r, arch, full.conv, full.fc)
        out["layers"].append({"network": r.network, "layer": r.name, "kind": r.kind,
                              "batch": r.batch, "macs": r.layer.macs, "latency_s": r.latency_s, "energy_j": r.energy_j,
                              "predicted_latency_s": t, "predicted_energy_j": e})
    networks = sorted({r.network for r in rows if r.kind == "conv" and r.network})
    for a in networks:
        for b in networks:
            if a == b:
                continue
            train = [r for r in rows if r.kind == "conv" and r.network == a]
            test = [r for r in rows if r.kind == "conv" and r.network == b]
            if len(train) < 3 or not test:
                continue
            conv = fit_conv(train, arch, base_conv)
            preds = [predict(r, arch, conv, full.fc) for r in test]
            macs = [per_mac_predict(train, r) for r in test]
            tm, em = sum(r.latency_s for r in test), sum(r.energy_j for r in test)
            out["cross_network"][f"{a}->{b}"] = {
                "new": {"latency": sum(p[0] for p in preds) / tm - 1, "energy": sum(p[1] for p in preds) / em - 1},
                "per_mac": {"latency": sum(p[0] for p in macs) / tm - 1, "energy": sum(p[1] for p in macs) / em - 1}}
    out["fit"] = full
    return out


def profile_toml(fit: Fit, evaluation: dict, *, name: str, description: str, process_nm: float,
                 sources: dict, base_params: dict | None = None) -> str:
    """An accelerator profile with the fitted coefficients and how they were obtained."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(float(v)) if isinstance(v, float) else str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["# Written by 'fodlam calibrate'. Coefficients fitted on measured layers; see [shape_model.fit].",
             f"name = {val(name)}", f"description = {val(description)}",
             'cost_model = "fodlam-shape"', f"process_nm = {val(float(process_nm))}",
             'technology_scaling = "dennard"', "", "[sources]"]
    lines += [f"{k} = {val(v)}" for k, v in sources.items()]
    lines += ["", "[architecture]"] + [f"{k} = {val(v)}" for k, v in fit.arch.items() if k != "clock_hz"]
    dispatch = dict((base_params or {}).get("dispatch") or {"rule": "energy"})
    lines += ["", "[dispatch]"] + [f"{k} = {val(v)}" for k, v in dispatch.items()]
    roof = (base_params or {}).get("roofline")
    if roof:
        lines += ["", "[roofline]"] + [f"{k} = {val(v)}" for k, v in roof.items()]
    lines += ["", "[shape_model]", f"process_nm = {val(float(process_nm))}", "", "[shape_model.conv]"]
    lines += [f"{k} = {val(v)}" for k, v in fit.conv.items()]
    lines += ["", "[shape_model.fc]"] + [f"{k} = {val(v)}" for k, v in fit.fc.items()]
    lines += ["", "[shape_model.fit]"]
    for kind, res in evaluation["loo"].items():
        for metric in ("latency", "energy"):
            lines.append(f"{kind}_{metric}_ratio_range = {val(res['ratio_range'][metric])}")
            lines.append(f"{kind}_{metric}_loo_mean_error = {val(res['new'][metric]['mean'])}")
            lines.append(f"{kind}_{metric}_loo_max_error = {val(res['new'][metric]['max'])}")
    lines.append(f"data = {val(evaluation.get('data', 'bundled published tables'))}")
    for kind in ("conv", "fc"):
        layers = [x for x in evaluation["layers"] if x["kind"] == kind]
        macs = sum(x["macs"] for x in layers)
        if layers and macs:
            lines += ["", f"[shape_model.fit.{kind}_per_mac]",
                      f"energy_j = {val(sum(x['predicted_energy_j'] for x in layers) / macs)}",
                      f"latency_s = {val(sum(x['predicted_latency_s'] for x in layers) / macs)}"]
    return "\n".join(lines) + "\n"


# ---- the calibration flow (``fodlam calibrate``, callable from Python) --------------------

BUNDLED_DATA = ("bundled: eyeriss-jssc2017 Tables V-VI (18 conv), eie-isca2016 Tables III-IV "
                "(6 fc), EIE moved to the profile's node")


@dataclass
class Calibration:
    """A base profile, the measured layers moved to its node, and the fit's evaluation
    (``evaluate``: leave-one-out, cross-network, the fit on all the data)."""

    base: object                 # the base Accelerator
    rows: list
    evaluation: dict
    data: str                    # where the measurements came from
    user_data: bool = False

    def profile_toml(self, *, name: str | None = None, description: str | None = None,
                     out=None) -> str:
        """The calibrated profile's TOML, checked to load (every coefficient finite and in
        range): data that cannot be fitted is an ``InputError``, never a profile holding inf."""
        base = self.base
        name = name or (Path(out).stem if out and self.user_data else base.name)
        text = profile_toml(self.evaluation["fit"], self.evaluation, name=name,
                            description=description or (
                                f"calibrated by fodlam calibrate from {self.data}"
                                if self.user_data else base.description),
                            process_nm=base.process_nm,
                            sources=base.sources if not self.user_data else {"data": self.data},
                            base_params=base.params)
        _check_loads(text, out or "the profile")
        return text


def calibrate(accelerator=None, data=None) -> Calibration:
    """Fit the shape-aware model of ``accelerator``'s array (a bundled name or a TOML path)
    on measured layers: ``data`` (a CSV, see docs/calibration.md) or the bundled published
    Eyeriss and EIE layers, moved to the profile's node."""
    from fodlam.accelerator import load_accelerator
    from fodlam.errors import InputError

    base = load_accelerator(accelerator)
    arch = dict(base.params.get("architecture") or {})
    if not arch:
        raise InputError(f"base profile {base.name} has no [architecture] table (PE array, clock); "
                         "start from a profile that has one, e.g. eyeriss-eie-65nm")
    base_model = base.params.get("shape_model", {})
    target = base.process_nm
    if data:
        rows = read_csv(data, target_nm=target, rule=base.technology_scaling)
        label = f"user data {data}"
    else:
        rows = bundled_rows(target, base.technology_scaling)
        label = BUNDLED_DATA
    ev = evaluate(rows, arch, base_model.get("conv"), base_model.get("fc"))
    ev["data"] = label
    _check_finite(ev, label)
    return Calibration(base, rows, ev, label, user_data=bool(data))


def _check_finite(value, label: str, where: str = "") -> None:
    """Every figure the calibration reports is finite (no +inf% error, no NaN coefficient),
    else a one-line error naming the figure."""
    from fodlam.errors import InputError

    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, label, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, label, f"{where}[{i}]")
    elif isinstance(value, Fit):
        _check_finite({"conv": value.conv, "fc": value.fc}, label, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"calibration on {label}: {where} = {value!r}; the data cannot be fitted "
                         "(a layer with zero MACs, latency or energy, or units that do not "
                         "match): check the data")


def _check_loads(text: str, out) -> None:
    """A calibrated profile is written only if it loads."""
    import tempfile

    from fodlam.accelerator import load_accelerator
    from fodlam.errors import InputError

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "calibrated.toml"
        probe.write_text(text, encoding="utf-8")
        try:
            load_accelerator(str(probe))
        except ConfigError as e:
            why = str(e).replace(str(probe), "the fitted profile")
            raise InputError(f"calibration gives no usable profile ({why}); check the data for "
                             f"outliers or inconsistent units; {out} not written") from None
