"""Views of a costed profile that people already know from other tools: one line in a
REPL, a styled summary in a notebook (HTML and Markdown), a module tree with a depth (as
torchinfo and fvcore print), and one record per node with every figure the JSON has that
fits a column (the DataFrame and the CSV)."""

from __future__ import annotations

import html
import math

from ..units import format_count, format_si, xml_document

#: aten kernels whose names say nothing to a reader, by what they compute
READABLE = (("scaled_dot_product", "attention"), ("_native_multi_head_attention", "attention"),
            ("convolution", "conv"), ("addmm", "linear"), ("linear", "linear"),
            ("bmm", "matmul"), ("matmul", "matmul"), ("native_batch_norm", "batch_norm"),
            ("_native_batch_norm_legit", "batch_norm"), ("native_layer_norm", "layer_norm"))


def readable_op(node) -> str:
    """A leaf operation's name for people: ``attention`` for
    ``aten._scaled_dot_product_flash_attention_for_cpu.default`` (the kernel name stays in
    the JSON's ``op``)."""
    op = str(node.op)
    base = op.split("::")[-1]
    parts = base.split(".")
    name = parts[1] if len(parts) >= 2 and parts[0] in ("aten", "quantized", "prims") else parts[0]
    for key, label in READABLE:
        if key in name:
            return label
    return name.lstrip("_") or op


def dominant_bound(profile) -> str:
    """The bound that holds the most of the profile's time."""
    by: dict = {}
    for n in profile.nodes:
        for e in n.estimates:
            key = (e.bound or ("element-wise" if e.latency_s else "")).split(" + ")[0]
            if key:
                by[key] = by.get(key, 0.0) + e.latency_s
    return max(by, key=by.get) if by else "n/a"


def one_line(profile) -> str:
    n = len(profile.nodes)
    return (f"<fodlam.Profile {profile.model.get('name', '?')} on "
            f"{profile.accelerator.get('name', '?')}: {format_count(profile.total_macs)} MACs, "
            f"{format_si(profile.total_energy_j, 'J')}, {format_si(profile.total_latency_s, 's')}, "
            f"{n} node{'' if n == 1 else 's'}, batch {profile.batch}, "
            f"mostly {dominant_bound(profile)}>")


def _totals(profile) -> list[tuple[str, str]]:
    t, e, b = profile.total_latency_s, profile.total_energy_j, max(1, profile.batch)
    return [("MACs", format_count(profile.total_macs)),
            ("energy", format_si(e, "J")),
            ("latency", format_si(t, "s")),
            ("energy per inference", format_si(e / b, "J")),
            ("inferences per second", f"{b / t:.4g}" if t > 0 else "n/a"),
            ("bound", dominant_bound(profile)),
            ("accelerator", str(profile.accelerator.get("name", "?"))),
            ("cost model", f"{profile.cost_model.get('name')} ({profile.cost_model.get('mode')})")]


def _top_rows(profile, top: int) -> list[list[str]]:
    energy = profile.total_energy_j or 1.0
    return [[n.name, readable_op(n), n.kind, format_count(n.macs), format_si(n.energy_j, "J"),
             format_si(n.latency_s, "s"), f"{100 * n.energy_j / energy:.1f}%",
             _bound_of(n)] for n in profile.top(top)]


def _bound_of(node) -> str:
    bounds = [e.bound for e in node.estimates if e.bound]
    return " + ".join(dict.fromkeys(bounds)) if bounds else ""


TOP_HEADER = ["name", "op", "kind", "MACs", "energy", "latency", "%energy", "bound"]
_STYLE = ("<style>.fodlam-summary{font-family:system-ui,sans-serif;font-size:13px}"
          ".fodlam-summary table{border-collapse:collapse;margin:4px 0}"
          ".fodlam-summary th,.fodlam-summary td{padding:2px 8px;border-bottom:1px solid #ddd;"
          "text-align:left}.fodlam-summary td.n{text-align:right}"
          ".fodlam-summary caption{text-align:left;color:#555;padding:2px 0}</style>")


def _html_table(header, rows, caption="") -> str:
    num = {i for i, h in enumerate(header) if h in ("MACs", "energy", "latency", "%energy", "s", "J")}
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td{' class=n' if i in num else ''}>{html.escape(str(c))}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


@xml_document
def html_summary(title: str, totals, header, rows, caption) -> str:
    head = f"<p><b>{html.escape(title)}</b></p>"
    tot = _html_table(["figure", "value"], totals)
    return f"<div class='fodlam-summary'>{_STYLE}{head}{tot}{_html_table(header, rows, caption)}</div>"


def markdown_table(header, rows) -> str:
    def cell(c):
        return str(c).replace("|", "\\|")
    out = ["| " + " | ".join(cell(h) for h in header) + " |",
           "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown_summary(title: str, totals, header, rows, caption) -> str:
    return (f"**{title}**\n\n" + markdown_table(["figure", "value"], totals)
            + (f"\n\n{caption}:\n\n" + markdown_table(header, rows) if rows else "") + "\n")


def profile_display(profile, top: int = 10, markdown: bool = False) -> str:
    rows = _top_rows(profile, top)
    caption = f"top {len(rows)} of {len(profile.nodes)} nodes by energy"
    title = f"FODLAM profile of {profile.model.get('name', '?')}"
    make = markdown_summary if markdown else html_summary
    return make(title, _totals(profile), TOP_HEADER, rows, caption)


# ---- the module tree ------------------------------------------------------------------------

def module_tree(profile, depth: int = 2) -> list[dict]:
    """Rows of the module tree down to ``depth``: every module path of at most ``depth``
    components that holds a node, in graph order, with its type, parameters, input and
    output shapes, MACs, J, s, share of the total and memory (parameter and activation
    bytes); a node deeper than ``depth`` counts in its ancestor at ``depth``; a leaf node at
    or above it is listed by its readable operation name."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    rows: dict[str, dict] = {}
    order: list[str] = []
    e_total, t_total = profile.total_energy_j or 1.0, profile.total_latency_s or 1.0
    types = profile.model.get("module_types") or {}
    for n in profile.nodes:
        path = n.module or ""
        parts = [p for p in path.split(".") if p] if path else []
        keys = [".".join(parts[:i]) for i in range(1, min(len(parts), depth) + 1)]
        if not parts:                  # an operation outside any module: a row of its own
            keys = [n.name]
        for level, key in enumerate(keys):
            row = rows.get(key)
            if row is None:
                row = rows[key] = {
                    "path": key, "depth": level + 1,
                    "type": types.get(key) or (readable_op(n) if not parts else
                                               _module_type(n, parts, level)),
                    "params": 0, "input_shape": None, "output_shape": None, "macs": 0,
                    "energy_j": 0.0, "latency_s": 0.0, "param_bytes": 0.0,
                    "activation_bytes": 0.0}
                order.append(key)
            _add(row, n)
    out = [rows[k] for k in order]
    for r in out:
        r["energy_pct"] = 100 * r["energy_j"] / e_total
        r["latency_pct"] = 100 * r["latency_s"] / t_total
    return out


def _module_type(node, parts, level) -> str:
    origin = node.node.origin
    if level == len(parts) - 1:
        return origin.get("module_type", "") or ""
    return ""


def _add(row: dict, node) -> None:
    origin = node.node.origin
    weights = sum(getattr(x, "weight_elems", 0) or 0 for x in node.node.layers)
    bits = next((x.bits for x in node.node.layers if getattr(x, "bits", None)), 32)
    row["params"] += weights
    row["param_bytes"] += weights * bits / 8
    out_elems = max((x.output_elems for x in node.node.layers), default=0)
    row["activation_bytes"] += out_elems * bits / 8
    row["macs"] += node.macs
    row["energy_j"] += node.energy_j
    row["latency_s"] += node.latency_s
    if row["input_shape"] is None and origin.get("input_shape") is not None:
        row["input_shape"] = origin["input_shape"]
    if origin.get("output_shape") is not None:
        row["output_shape"] = origin["output_shape"]


def tree_lines(profile, depth: int = 2) -> list[str]:
    from .table import render_table

    rows = module_tree(profile, depth)

    def shape(s):
        return "x".join(str(d) for d in s) if s else "-"
    table = [["  " * (r["depth"] - 1) + r["path"].rsplit(".", 1)[-1].rsplit("/", 1)[-1],
              r["type"] or "-", format_count(r["params"]) if r["params"] else "-",
              shape(r["input_shape"]), shape(r["output_shape"]), format_count(r["macs"]),
              format_si(r["energy_j"], "J"), format_si(r["latency_s"], "s"),
              f"{r['energy_pct']:.1f}%", format_si(r["param_bytes"], "B"),
              format_si(r["activation_bytes"], "B")] for r in rows]
    head = [f"FODLAM module tree of {profile.model.get('name', '?')} on "
            f"{profile.accelerator.get('name', '?')} (depth {depth})"]
    lines = render_table(["module", "type", "params", "input", "output", "MACs", "energy",
                          "latency", "%energy", "param mem", "act mem"], table)
    total_params = sum(r["params"] for r in rows if r["depth"] == 1)
    foot = [f"total: {format_count(profile.total_macs)} MACs, "
            f"{format_si(profile.total_energy_j, 'J')}, {format_si(profile.total_latency_s, 's')}; "
            f"{format_count(total_params)} parameters used by the MAC layers"]
    return head + lines + foot


# ---- one record per node ---------------------------------------------------------------------

BASE_COLUMNS = ["name", "op", "kind", "module", "module_type", "macs", "ops", "energy_j",
                "latency_s", "modeled", "method", "engine", "bound", "cycles", "dram_bytes",
                "sram_bytes", "fused_into", "energy_j_lo", "energy_j_hi", "latency_s_lo",
                "latency_s_hi"]


def _mapping_sum(node, key: str):
    total, seen = 0.0, False
    for e in node.estimates:
        mp = e.mapping or {}
        for m in mp.get("nests", [mp]):
            v = m.get(key)
            if key == "dram_bytes" and v is None and "port_bytes" in m:
                v = m["port_bytes"].get("dram")
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                total += v
                seen = True
    return total if seen else None


def records(profile) -> tuple[list[str], list[dict]]:
    """(columns, one dict per node): the JSON's per-node figures under its names, and one
    ``energy_<component>_j`` column per energy component."""
    comps: list[str] = []
    for n in profile.nodes:
        for k in n.components:
            if k not in comps:
                comps.append(k)
    cols = BASE_COLUMNS + [f"energy_{c}_j" for c in comps]
    out = []
    for n in profile.nodes:
        iv = n.interval()
        (elo, ehi), (tlo, thi) = iv if iv else ((None, None), (None, None))
        r = {"name": n.name, "op": n.op, "kind": n.kind, "module": n.module,
             "module_type": n.node.origin.get("module_type", ""), "macs": n.macs, "ops": n.ops,
             "energy_j": n.energy_j, "latency_s": n.latency_s, "modeled": n.node.modeled,
             "method": n.method, "engine": n.engine or "", "bound": _bound_of(n),
             "cycles": _mapping_sum(n, "cycles"), "dram_bytes": _mapping_sum(n, "dram_bytes"),
             "sram_bytes": _mapping_sum(n, "sram_bytes"), "fused_into": n.fused_into or "",
             "energy_j_lo": elo, "energy_j_hi": ehi, "latency_s_lo": tlo, "latency_s_hi": thi}
        comp = n.components
        for c in comps:
            r[f"energy_{c}_j"] = comp.get(c, 0.0)
        out.append(r)
    return cols, out
