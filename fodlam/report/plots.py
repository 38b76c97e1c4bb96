"""Charts of a Profile, with matplotlib (imported only here, only when asked for).

Every function draws on axes it is given, so the same drawing serves the HTML report,
the PNG report and ``Profile.plot()`` in a notebook.
"""

from __future__ import annotations

from ..layers import MAC_KINDS

KIND_COLORS = {"conv": "#1f77b4", "fc": "#ff7f0e", "matmul": "#2ca02c", "rnn": "#d62728",
               "pool": "#9467bd", "eltwise": "#8c564b", "norm": "#e377c2", "reduce": "#7f7f7f",
               "gather": "#bcbd22", "data": "#17becf", "unmodeled": "#000000"}


def literal(text) -> str:
    """User text (model, node, module and accelerator names) as matplotlib draws it
    literally: a ``$`` would otherwise open mathtext, and a name like ``conv$\\x{y}$`` fail
    to parse."""
    return str(text).replace("$", r"\$")


def _short(name: str, width: int = 34) -> str:
    name = name if len(name) <= width else "…" + name[-(width - 1):]
    return literal(name)


def draw_layer_bars(ax_energy, ax_latency, profile, top: int = 25) -> None:
    nodes = [n for n in profile.top(top, by="energy_j") if n.energy_j > 0 or n.latency_s > 0]
    nodes = list(reversed(nodes))  # largest at the top
    labels = [_short(n.name) for n in nodes]
    colors = [KIND_COLORS.get(n.kind, "#333333") for n in nodes]
    y = range(len(nodes))
    ax_energy.barh(list(y), [n.energy_j * 1e3 for n in nodes], color=colors)
    ax_energy.set_yticks(list(y))
    ax_energy.set_yticklabels(labels, fontsize=7)
    ax_energy.set_xlabel("energy (mJ)")
    ax_energy.set_title(f"energy per layer (top {len(nodes)})", fontsize=10)
    ax_latency.barh(list(y), [n.latency_s * 1e3 for n in nodes], color=colors)
    ax_latency.set_yticks(list(y))
    ax_latency.tick_params(labelleft=False)
    ax_latency.set_xlabel("latency (ms)")
    ax_latency.set_title("latency per layer", fontsize=10)
    for ax in (ax_energy, ax_latency):
        ax.grid(axis="x", alpha=0.3)


#: rows of a share chart (energy by kind, by component)
MAX_ROWS = 10


def _share_bars(ax, names, values, colors, title) -> None:
    """Horizontal bars, one row per name, the largest on top, each with its share written
    past its end; past ``MAX_ROWS`` the smallest are summed into one "other" row, so labels
    keep a row of their own however many there are."""
    names, values = list(names), list(values)
    if len(names) > MAX_ROWS:
        rest = len(names) - (MAX_ROWS - 1)
        names = names[:MAX_ROWS - 1] + [f"other ({rest})"]
        values = values[:MAX_ROWS - 1] + [sum(values[MAX_ROWS - 1:])]
        if isinstance(colors, list):
            colors = colors[:MAX_ROWS - 1] + ["#999999"]
    ys = list(range(len(names)))[::-1]
    ax.barh(ys, values, color=colors)
    ax.set_yticks(ys, [_short(n, 22) for n in names])
    ax.tick_params(axis="y", labelsize=7)
    top = max(values, default=1.0) or 1.0
    ax.set_xlim(0, top * 1.3)
    for y, v in zip(ys, values):
        ax.text(v + top * 0.02, y, f"{v:.1f}%", va="center", fontsize=7)
    ax.set_xlabel("% of energy")
    ax.set_title(title, fontsize=10)


def draw_kind_breakdown(ax, profile) -> None:
    by_kind = {k: v for k, v in profile.by_kind().items() if v["energy_j"] > 0}
    kinds = sorted(by_kind, key=lambda k: -by_kind[k]["energy_j"])
    total = sum(v["energy_j"] for v in by_kind.values()) or 1.0
    values = [100 * by_kind[k]["energy_j"] / total for k in kinds]
    _share_bars(ax, kinds, values, [KIND_COLORS.get(k, "#333333") for k in kinds],
                "energy by kind")


def component_totals(profile) -> dict[str, float]:
    """Energy by component (compute, on-chip buffers, DRAM...) where the cost model gives one."""
    out: dict[str, float] = {}
    for n in profile.nodes:
        for est in n.estimates:
            for comp, joules in (getattr(est, "components", None) or {}).items():
                out[comp] = out.get(comp, 0.0) + joules
    return out


def draw_components(ax, profile) -> bool:
    comps = component_totals(profile)
    if not comps:
        return False
    names = sorted(comps, key=lambda k: -comps[k])
    total = sum(comps.values()) or 1.0
    _share_bars(ax, names, [100 * comps[k] / total for k in names], "#4c72b0",
                "energy by component")
    return True


def roofline_points(profile):
    """(name, kind, MACs per byte, achieved MAC/s) of every MAC-bearing node with a cost."""
    bytes_per = float(profile.accelerator.get("bytes_per_element", 2))
    points = []
    for n in profile.nodes:
        if n.kind not in MAC_KINDS or n.latency_s <= 0 or n.macs <= 0:
            continue
        moved = sum(x.input_elems + x.weight_elems + x.output_elems for x in n.node.layers)
        if moved <= 0:
            continue
        points.append((n.name, n.kind, n.macs / (moved * bytes_per), n.macs / n.latency_s))
    return points


def draw_roofline(ax, profile) -> None:
    acc = profile.accelerator
    peak = acc.get("peak_macs_per_s")
    bandwidth = acc.get("dram_bytes_per_s")
    points = roofline_points(profile)
    for kind in sorted({p[1] for p in points}):
        xs = [p[2] for p in points if p[1] == kind]
        ys = [p[3] for p in points if p[1] == kind]
        label = "fc (EIE: sparse, dense-equivalent MAC/s)" if kind == "fc" else kind
        ax.scatter(xs, ys, s=14, label=label, color=KIND_COLORS.get(kind, "#333333"), alpha=0.8)
    xs_all = [p[2] for p in points] or [0.1, 100]
    lo, hi = min(xs_all) / 4, max(xs_all) * 4
    if peak and bandwidth:
        ridge = peak / bandwidth
        grid = [lo * (hi / lo) ** (i / 60) for i in range(61)]
        ax.plot(grid, [min(peak, bandwidth * x) for x in grid], color="black", lw=1.2,
                label=f"conv-array roof: {peak / 1e9:.3g} GMAC/s, {bandwidth / 1e9:.3g} GB/s")
        if lo < ridge < hi:
            ax.axvline(ridge, color="gray", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs / byte moved, first order)")
    ax.set_ylabel("achieved MAC/s")
    ax.set_title("roofline", fontsize=10)
    ax.grid(True, which="both", alpha=0.2)
    if points or (peak and bandwidth):
        outside_legend(ax)


def outside_legend(ax, **kw) -> None:
    """The legend below the axes, outside the data (it never hides a bar or a point)."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2,
              frameon=False, **kw)


def figure_layers(profile, top: int = 25):
    from matplotlib.figure import Figure

    n = min(top, len(profile.nodes))
    fig = Figure(figsize=(10, max(3.0, 0.22 * n + 1.2)), layout="constrained")
    ax_e, ax_t = fig.subplots(1, 2, sharey=True)
    draw_layer_bars(ax_e, ax_t, profile, top)
    return fig


def figure_summary(profile, top: int = 25):
    """Everything on one figure (the PNG report)."""
    from matplotlib.figure import Figure

    n = min(top, len(profile.nodes))
    fig = Figure(figsize=(13, max(7.0, 0.22 * n + 5.0)), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=[max(2.0, 0.22 * n), 3.2])
    ax_e = fig.add_subplot(grid[0, 0:2])
    ax_t = fig.add_subplot(grid[0, 2], sharey=ax_e)
    draw_layer_bars(ax_e, ax_t, profile, top)
    draw_kind_breakdown(fig.add_subplot(grid[1, 0]), profile)
    ax_c = fig.add_subplot(grid[1, 1])
    if not draw_components(ax_c, profile):
        ax_c.axis("off")
        ax_c.text(0.5, 0.5, f"cost model {literal(profile.cost_model.get('name'))}\n"
                  "gives no per-component breakdown", ha="center", va="center", fontsize=9)
    draw_roofline(fig.add_subplot(grid[1, 2]), profile)
    fig.suptitle(f"{literal(profile.model.get('name'))} on {literal(profile.accelerator.get('name'))}: "
                 f"{profile.total_energy_j * 1e3:.4g} mJ, {profile.total_latency_s * 1e3:.4g} ms, "
                 f"{profile.total_macs / 1e9:.4g} G MACs", fontsize=11)
    return fig


def png_bytes(fig, dpi: int = 110) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
