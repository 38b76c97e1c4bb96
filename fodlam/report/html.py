"""A self-contained HTML report of a Profile: no network fetches, images embedded."""

from __future__ import annotations

import base64
import html
import json

from ..units import format_count, format_si, xml_document
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


@xml_document
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


@xml_document
def render_generation(gen) -> str:
    """The report page of an LLM generation (``fodlam.llm.GenerationProfile``): its figures
    with units, the sampled decode steps against their context, and where the prefill's and
    a decode step's time goes."""
    from matplotlib.figure import Figure

    e = html.escape
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax_t, ax_e, ax_k = fig.subplots(1, 3)
    ctx = [s.context for s in gen.samples]
    ax_t.plot(ctx, [s.latency_s * 1e3 for s in gen.samples], "o-")
    ax_t.set_xlabel("context (tokens in the cache)")
    ax_t.set_ylabel("decode step (ms)")
    ax_e.plot(ctx, [s.energy_j * 1e3 / gen.batch for s in gen.samples], "o-", color="#c44")
    ax_e.set_xlabel("context (tokens in the cache)")
    ax_e.set_ylabel("energy per token (mJ)")
    phases = {"prefill": gen.prefill, "decode (last)": gen.decode_last}
    kinds = sorted({k for p in phases.values() for k in p.by_kind()})
    bottom = [0.0, 0.0]
    for kind in kinds:
        vals = [p.by_kind().get(kind, {}).get("latency_s", 0.0) / (p.total_latency_s or 1)
                for p in phases.values()]
        ax_k.bar(list(phases), vals, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax_k.set_ylabel("share of the phase's time")
    plots.outside_legend(ax_k)
    chart = _img(plots.png_bytes(fig), "decode steps against context, and time by kind per phase")
    rows = "".join(f"<tr><td>{e(k)}</td><td class='n'>{e(v)}</td></tr>" for k, v in [
        ("time to first token", format_si(gen.time_to_first_token_s, "s")),
        ("decode latency per token", format_si(gen.decode_latency_s_per_token, "s")),
        ("decode energy per token", format_si(gen.decode_energy_j_per_token, "J")),
        ("tokens per second", f"{gen.tokens_per_s:.4g}"),
        ("energy per token (all)", format_si(gen.energy_per_token_j, "J")),
        ("total energy", format_si(gen.total_energy_j, "J")),
        ("total latency", format_si(gen.total_latency_s, "s")),
        ("KV cache at the end", format_si(gen.kv_cache_bytes, "B")),
        ("bytes read per decode step", format_si(gen.decode_bytes_per_step, "B")),
        ("MACs", format_count(gen.total_macs)),
        ("bound", ", ".join(f"{k}: {v}" for k, v in gen.bound.items()))])
    tops = ""
    for title, prof in (("Prefill", gen.prefill), ("Last decode step", gen.decode_last)):
        body = "".join(f"<tr><td>{e(n.name)}</td><td>{e(n.kind)}</td><td class='n'>"
                       f"{e(format_si(n.latency_s, 's'))}</td><td class='n'>{e(format_si(n.energy_j, 'J'))}</td></tr>"
                       for n in prof.top(10, by="latency_s"))
        tops += (f"<h2>{title}: top nodes by time</h2><table><thead><tr><th>node</th><th>kind</th>"
                 f"<th>latency</th><th>energy</th></tr></thead><tbody>{body}</tbody></table>")
    data = json.dumps({k: getattr(gen, k) for k in gen.KEYS}).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>FODLAM generation: {e(str(gen.model.get('name')))}</title>
<style>{_CSS}</style></head><body>
<h1>FODLAM generation: {e(str(gen.model.get('name')))}</h1>
<div class="muted">{e(str(gen.accelerator.get('name')))} &middot; prompt {gen.prompt_len} tokens &middot;
{gen.new_tokens} new tokens &middot; batch {gen.batch}</div>
<table id="figures"><tbody>{rows}</tbody></table>
<p class="muted">{e(gen.how)}</p>
{chart}
{tops}
<script type="application/json" id="generation-data">{data}</script>
</body></html>
"""
