"""A self-contained HTML report of a Profile: no network fetches, images embedded."""

from __future__ import annotations

import base64
import html
import json

from ..units import format_count, format_si
from . import plots

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.totals{display:flex;gap:28px;margin:14px 0} .totals div{background:#f3f5f8;padding:10px 16px;border-radius:6px}
td.fused{padding-left:1.4em;color:#555}
.totals b{display:block;font-size:20px} table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
th{cursor:pointer;background:#f7f7f7;position:sticky;top:0} th:hover{background:#e8eef7}
img{max-width:100%} .muted{color:#666;font-size:13px} code{background:#f3f3f3;padding:1px 4px}
"""

_JS = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
function sortTable(th) {
  var table = th.closest('table'), body = table.tBodies[0];
  var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
  var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[idx].dataset.v, y = b.cells[idx].dataset.v;
    var nx = parseFloat(x), ny = parseFloat(y);
    var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
    return asc ? c : -c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('th[data-sort]').forEach(function (th) {
    th.addEventListener('click', function () { sortTable(th); });
  });
  document.body.dataset.ready = window.__errors.length ? 'errors' : '1';
});
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _cell(value, shown=None, numeric=False) -> str:
    shown = value if shown is None else shown
    cls = ' class="n"' if numeric else ""
    return f'<td{cls} data-v="{html.escape(str(value))}">{html.escape(str(shown))}</td>'


def render(profile, top: int = 25) -> str:
    e = html.escape
    acc = profile.accelerator
    cm = profile.cost_model
    summary_png = plots.png_bytes(plots.figure_layers(profile, top))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    plots.draw_kind_breakdown(axes[0], profile)
    if not plots.draw_components(axes[1], profile):
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, f"cost model {cm.get('name')}\ngives no per-component breakdown",
                     ha="center", va="center", fontsize=9)
    plots.draw_roofline(axes[2], profile)
    charts_png = plots.png_bytes(fig)

    rows = []
    energy_total = profile.total_energy_j or 1.0
    for n, absorbed in profile.grouped():
        name = _cell(n.name, ("\u21b3 " + n.name) if absorbed else n.name)
        if absorbed:
            name = name.replace("<td", f'<td class="fused" title="absorbed by the output '
                                f'pipeline of {e(str(n.fused_into))}"', 1)
        rows.append("<tr>" + "".join([
            name, _cell(n.op), _cell(n.kind),
            _cell(n.macs, format_count(n.macs), True),
            _cell(repr(n.energy_j), format_si(n.energy_j, "J"), True),
            _cell(repr(n.latency_s), format_si(n.latency_s, "s"), True),
            _cell(n.energy_j / energy_total, f"{100 * n.energy_j / energy_total:.2f}%", True),
            _cell(n.method), _cell(n.how)]) + "</tr>")
    kinds = "".join(
        "<tr>" + _cell(k) + _cell(v["count"], numeric=True) +
        _cell(v["macs"], format_count(v["macs"]), True) +
        _cell(v["energy_j"], format_si(v["energy_j"], "J"), True) +
        _cell(v["latency_s"], format_si(v["latency_s"], "s"), True) + "</tr>"
        for k, v in profile.by_kind().items())
    sources = "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in acc.get("sources", {}).items())
    rules = "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in cm.get("rules", {}).items())
    unmodeled = ""
    if profile.unmodeled:
        unmodeled = ("<p><b>Not costed (no lowering):</b> " + e(", ".join(
            f"{op} x{c}" for op, c in profile.unmodeled.items())) + "</p>")
    warnings = "".join(f"<li>{e(w)}</li>" for w in profile.warnings)
    total_text = (f"{format_si(profile.total_energy_j, 'J')}, "
                  f"{format_si(profile.total_latency_s, 's')}")
    data = json.dumps({"total": {"macs": profile.total_macs, "energy_j": profile.total_energy_j,
                                 "latency_s": profile.total_latency_s}})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FODLAM report: {e(str(profile.model.get('name')))}</title>
<style>{_CSS}</style><script>{_JS}</script></head>
<body>
<h1>FODLAM report: {e(str(profile.model.get('name')))}</h1>
<div class="muted">{e(str(profile.model.get('source', '')))} &middot; batch {profile.batch} &middot;
cost model <code>{e(str(cm.get('name')))}</code> ({e(str(cm.get('mode')))})</div>
<div class="totals" id="totals" data-total='{e(data)}'>
<div>energy<b id="total-energy">{e(format_si(profile.total_energy_j, 'J'))}</b></div>
<div>latency<b id="total-latency">{e(format_si(profile.total_latency_s, 's'))}</b></div>
<div>MACs<b id="total-macs">{e(format_count(profile.total_macs))}</b></div>
<div>nodes<b>{len(profile.nodes)}</b></div></div>
<p class="muted">Total: {e(total_text)}. {e(str(cm.get('normalisation', '')))}</p>
{unmodeled}
<h2>Accelerator</h2>
<p><b>{e(str(acc.get('name')))}</b>: {e(str(acc.get('description', '')))}
({e(str(acc.get('process_nm')))} nm, technology scaling: {e(str(acc.get('technology_scaling')))})</p>
<ul>{sources}</ul>
<p class="muted">First-order rules for kinds without published measurements:</p><ul class="muted">{rules}</ul>
<h2>Where the energy and time go</h2>
{_img(summary_png, 'energy and latency per layer')}
{_img(charts_png, 'energy by kind, by component, and roofline')}
<h2>By kind</h2>
<table><thead><tr><th data-sort>kind</th><th data-sort>layers</th><th data-sort>MACs</th>
<th data-sort>energy</th><th data-sort>latency</th></tr></thead><tbody>{kinds}</tbody></table>
<h2>Per layer <span class="muted">(click a column to sort)</span></h2>
<table id="layers"><thead><tr><th data-sort>name</th><th data-sort>op</th><th data-sort>kind</th>
<th data-sort>MACs</th><th data-sort>energy</th><th data-sort>latency</th><th data-sort>% energy</th>
<th data-sort>method</th><th data-sort>how</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{'<h2>Warnings</h2><ul>' + warnings + '</ul>' if warnings else ''}
<p class="muted">Generated by FODLAM {e(str(profile.to_dict()['fodlam_version']))}.</p>
</body></html>
"""
