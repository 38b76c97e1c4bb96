"""The report of a sweep: energy-latency Pareto fronts per model and a parameter-sensitivity
chart, on one self-contained HTML page (images embedded, no network fetches)."""

from __future__ import annotations

import html
import json
import math
import statistics

from ..units import format_si, xml_document
from .html import _CSS, _JS, _img
from .plots import literal, outside_legend, png_bytes

META = {"point", "model", "batch", "accelerator", "overrides", "process_nm", "scaling", "status",
        "error", "macs", "energy_j", "latency_s", "edp_js", "unmodeled_nodes", "accelerator_source"}


def _ok(rows):
    return [r for r in rows if r.get("status") == "ok" and r.get("energy_j") is not None]


def _script_safe(text: str) -> str:
    """JSON text that can stand inside a <script> element and still parse as JSON: the
    characters HTML gives meaning to there are written as JSON escapes, not entities."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def group_label(r: dict) -> str:
    """The front a sweep row belongs to: its model, and its batch where one is set."""
    return f"{r['model']} @ batch {r['batch']}" if r.get("batch") not in (None, "") else r["model"]


def front(rs: list[dict]) -> list[dict]:
    """The rows no other row beats on both energy and latency, fastest first."""
    rs = sorted(rs, key=lambda r: (float(r["latency_s"]), float(r["energy_j"])))
    out, best = [], math.inf
    for r in rs:
        if float(r["energy_j"]) < best:
            out.append(r)
            best = float(r["energy_j"])
    return out


def parameters(rows) -> list[str]:
    """The swept profile fields (override columns) and the process node, where they vary."""
    keys: dict = {}                 # insertion-ordered, constant-time membership
    for r in rows:
        for k in r:
            if k not in keys and k not in META and not k.startswith(("energy_j_", "latency_s_")):
                keys[k] = None
    keys = list(keys)
    nodes = {r.get("process_nm") for r in rows if r.get("process_nm") not in (None, "")}
    return keys + (["process_nm"] if len(nodes) > 1 else [])


#: rows kept (a uniform sample, seeded) for the scatter plots and the sensitivity medians;
#: fronts and counts always use every row
SAMPLE = 20000


class Summary:
    """What a sweep report needs, read in one streaming pass over the rows: counts, the
    exact Pareto front of each model (and batch), and a uniform sample of the costed rows
    (all of them up to ``SAMPLE``), so a report of 10^7 rows needs memory for the sample
    only."""

    def __init__(self, rows, sample: int = SAMPLE):
        import random

        self.points = self.ok = 0
        self.models: dict = {}
        self.fronts: dict = {}
        self.sample: list = []
        rng = random.Random(0)
        for r in rows:
            self.points += 1
            self.models.setdefault(r["model"], None)
            if r.get("status") != "ok" or r.get("energy_j") is None:
                continue
            self.ok += 1
            self._add_to_front(r)
            if len(self.sample) < sample:
                self.sample.append(r)
            else:
                j = rng.randrange(self.ok)
                if j < sample:
                    self.sample[j] = r
        self.sampled = self.ok > len(self.sample)
        self.fronts = {k: front(v) for k, v in self.fronts.items()}

    @property
    def failed(self) -> int:
        return self.points - self.ok

    def _add_to_front(self, r: dict) -> None:
        """Keep the rows no row seen so far strictly dominates (a superset of the front,
        in arrival order; ``front`` then gives exactly the front of every row)."""
        lat, en = float(r["latency_s"]), float(r["energy_j"])
        cands = self.fronts.setdefault(group_label(r), [])
        for c in cands:
            cl, ce = float(c["latency_s"]), float(c["energy_j"])
            if cl <= lat and ce <= en and (cl < lat or ce < en):
                return
        cands[:] = [c for c in cands if not (lat <= float(c["latency_s"]) and en <= float(c["energy_j"])
                                             and (lat < float(c["latency_s"]) or en < float(c["energy_j"])))]
        cands.append(r)


def _readable_log_axes(ax) -> None:
    """Log axes whose labels never overlap: a few major ticks, plain numbers, no minor
    labels."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, numticks=5))
        fmt = ScalarFormatter()
        fmt.set_scientific(True)
        fmt.set_powerlimits((-3, 4))
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=7)


def _summary(rows) -> Summary:
    return rows if isinstance(rows, Summary) else Summary(rows)


def figure_pareto(rows):
    from matplotlib.figure import Figure

    summary = _summary(rows)
    ok = summary.sample
    models = list(summary.fronts) or ["(no points)"]
    cols = min(3, len(models))
    nrows = math.ceil(len(models) / cols)
    fig = Figure(figsize=(5.2 * cols, 4.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, model in zip(axes.flat, models):
        rs = [r for r in ok if group_label(r) == model]
        for acc in dict.fromkeys(r["accelerator"] for r in rs):
            sel = [r for r in rs if r["accelerator"] == acc]
            ax.scatter([r["latency_s"] * 1e3 for r in sel], [r["energy_j"] * 1e3 for r in sel], s=12,
                       alpha=0.6, label=literal(acc))
        edge = summary.fronts.get(model, [])
        if edge:
            ax.plot([r["latency_s"] * 1e3 for r in edge], [r["energy_j"] * 1e3 for r in edge], "k-",
                    lw=1.2, marker="o" if len(edge) == 1 else None, ms=7, mfc="none",
                    label="Pareto front")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _readable_log_axes(ax)
        ax.set_title(literal(model), fontsize=10)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("energy (mJ)")
        outside_legend(ax)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    return fig


def sensitivity(rows) -> dict:
    """For each swept parameter and value: the median over points of EDP relative to the
    median EDP of the same model (1.0 = typical; below 1 = that value helps); over the
    report's sample of the rows when there are more than ``SAMPLE``."""
    ok = _ok(rows.sample if isinstance(rows, Summary) else rows)
    med = {}
    for model in dict.fromkeys(r["model"] for r in ok):
        med[model] = statistics.median(r["edp_js"] for r in ok if r["model"] == model) or 1.0
    out = {}
    for key in parameters(ok):
        by_value: dict = {}
        for r in ok:
            v = r.get(key)
            if v in (None, ""):
                continue
            by_value.setdefault(float(v), []).append(r["edp_js"] / med[r["model"]])
        if len(by_value) > 1:
            out[key] = {v: statistics.median(xs) for v, xs in sorted(by_value.items())}
    return out


def figure_sensitivity(rows):
    from matplotlib.figure import Figure

    sens = sensitivity(rows)
    n = max(1, len(sens))
    fig = Figure(figsize=(4.2 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)
    if not sens:
        axes[0][0].text(0.5, 0.5, "no swept parameter takes more than one value", ha="center")
        axes[0][0].axis("off")
    for ax, (key, curve) in zip(axes[0], sens.items()):
        xs = list(curve)
        ax.plot(xs, [curve[x] for x in xs], "o-")
        ax.axhline(1.0, color="#999", lw=0.8)
        ax.set_xscale("log" if min(xs) > 0 and max(xs) / min(xs) >= 8 else "linear")
        ax.set_title(literal(key), fontsize=10)
        ax.set_xlabel("value")
        ax.set_ylabel("median EDP / model median")
    return fig


def figure_tokens(summary):
    """LLM entries: joules per generated token against batch, one line per model (prompt and
    generated tokens) and accelerator, from the costed rows' sample (median per batch)."""
    from matplotlib.figure import Figure

    curves: dict = {}
    for r in summary.sample:
        if r.get("energy_per_token_j") in (None, "") or r.get("batch") in (None, ""):
            continue
        key = f"{r['model']} / {r['accelerator']}"
        curves.setdefault(key, {}).setdefault(int(r["batch"]), []).append(float(r["energy_per_token_j"]))
    if not curves:
        return None
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for key, by_batch in sorted(curves.items()):
        xs = sorted(by_batch)
        ys = [sorted(by_batch[x])[len(by_batch[x]) // 2] for x in xs]
        ax.plot(xs, ys, "o-", label=literal(key))
    ax.set_xlabel("batch (sequences generated together)")
    ax.set_ylabel("J per generated token")
    ax.set_yscale("log")
    if max(len(v) for v in curves.values()) > 1:
        ax.set_xscale("log", base=2)
    outside_legend(ax)
    return fig


def png(rows) -> bytes:
    return png_bytes(figure_pareto(rows))


@xml_document
def render(rows, source: str = "") -> str:
    """The report page of a sweep's rows (a list, any iterable, or a ``Summary``)."""
    summary = _summary(rows)
    failed = summary.failed
    models = list(summary.models)
    pareto_png = png_bytes(figure_pareto(summary))
    sens_png = png_bytes(figure_sensitivity(summary))
    tokens_fig = figure_tokens(summary)
    tokens = ("<h2>LLM generation: joules per token</h2>\n<p class=\"muted\">For each LLM entry "
              "(model, prompt and generated tokens) and accelerator: the median energy per "
              "generated token, prefill included, at each batch.</p>\n"
              + _img(png_bytes(tokens_fig), "joules per generated token against batch")
              if tokens_fig is not None else "")
    table = []
    for model, edge in summary.fronts.items():
        for r in edge:
            cells = [html.escape(str(model)), html.escape(str(r["accelerator"])),
                     html.escape(str(r.get("overrides") or "-")), html.escape(str(r.get("process_nm") or "-")),
                     html.escape(str(r.get("batch") or "-"))]
            nums = [(format_si(r["energy_j"], "J"), r["energy_j"]), (format_si(r["latency_s"], "s"), r["latency_s"]),
                    (f"{r['edp_js']:.3g}", r["edp_js"])]
            table.append("<tr>" + "".join(f'<td data-v="{c}">{c}</td>' for c in cells)
                         + "".join(f'<td class="n" data-v="{v!r}">{html.escape(t)}</td>' for t, v in nums) + "</tr>")
    head = "".join(f'<th data-sort="1">{h}</th>' for h in
                   ("model", "accelerator", "overrides", "node (nm)", "batch", "energy", "latency", "EDP (J s)"))
    data = json.dumps({"points": summary.points, "ok": summary.ok, "failed": failed, "models": models,
                       "sampled": summary.sampled, "sample_rows": len(summary.sample)})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FODLAM sweep report</title>
<style>{_CSS}</style></head>
<body data-ready="0">
<h1>FODLAM sweep report</h1>
<p class="muted">{html.escape(str(source))}</p>
<div class="totals"><div>points<b id="points">{summary.points}</b></div><div>costed<b id="ok">{summary.ok}</b></div>
<div>failed<b id="failed">{failed}</b></div><div>models<b id="models">{len(models)}</b></div></div>
<h2>Energy-latency Pareto fronts</h2>
{_img(pareto_png, "energy against latency per model, Pareto front drawn")}
<h2>Parameter sensitivity</h2>
<p class="muted">For each swept field: the median, over the points that have a value, of their
energy-delay product relative to their model's median (below 1: that value helps).</p>
{_img(sens_png, "sensitivity of the energy-delay product to each swept parameter")}
{tokens}
<h2>Pareto points</h2>
<table><thead><tr>{head}</tr></thead><tbody>{''.join(table)}</tbody></table>
<script type="application/json" id="sweep-data">{_script_safe(data)}</script>
<script>{_JS}</script>
</body></html>
"""
