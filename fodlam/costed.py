"""Profile: a costed network (``fodlam.Profile``). One JSON schema for every command and
``Profile.to_json()``.

Schema ``fodlam-profile`` version 1 (documented in docs/profile-schema.md)::

    {"schema": "fodlam-profile", "schema_version": 1, "fodlam_version": "...",
     "model": {"name", "format", "source"}, "batch": 1,
     "accelerator": {...}, "cost_model": {"name", "mode", "normalisation", "rates", "rules"},
     "total": {"macs", "ops", "energy_j", "latency_s", "nodes", "unmodeled_nodes"},
     "by_kind": {kind: {"count", "macs", "ops", "energy_j", "latency_s"}},
     "nodes": [{"name", "op", "kind", "macs", "ops", "energy_j", "latency_s", "modeled",
                "method", "how", "origin", "layers": [...]}],
     "unmodeled": {op: count}, "warnings": [...]}
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from ._version import __version__
from .errors import InputError, UnmodeledError
from .models import Estimate
from .nodes import Imported, Node, _total, apply_activation_density
from .units import format_count, format_si

SCHEMA = "fodlam-profile"
SCHEMA_VERSION = 1


def _of_node(attr: str) -> property:
    """A property of a NodeCost that reads the costed node's own attribute."""
    return property(lambda self: getattr(self.node, attr), doc=f"the node's {attr}")


@dataclass
class NodeCost:
    node: Node
    estimates: tuple[Estimate, ...]
    #: the MAC node whose output pipeline absorbed this one (fodlam/fusion.py), if any
    fused_into: str | None = None

    energy_j = _total("energy_j", "estimates")
    latency_s = _total("latency_s", "estimates")

    @property
    def method(self) -> str:
        if not self.node.modeled:
            return "unmodeled"
        methods = [e.method for e in self.estimates if e.method != "none"]
        return methods[0] if len(set(methods)) == 1 else ("+".join(dict.fromkeys(methods)) or "none")

    @property
    def how(self) -> str:
        if not self.node.modeled:
            return f"no lowering for op '{self.node.op}': not costed" + (
                f" ({self.node.note})" if self.node.note else "")
        text = " | ".join(e.how for e in self.estimates if e.method != "none") or \
            "no arithmetic and no data moved"
        return f"{text} ({self.node.note})" if self.node.note else text

    # the node's own facts, mirrored
    name = _of_node("name")
    op = _of_node("op")
    kind = _of_node("kind")
    macs = _of_node("macs")
    ops = _of_node("ops")
    modeled = _of_node("modeled")

    @property
    def module(self) -> str:
        return self.node.origin.get("module", "")

    def __repr__(self) -> str:
        return (f"<NodeCost {self.name} ({self.kind}): {format_count(self.macs)} MACs, "
                f"{format_si(self.energy_j, 'J')}, {format_si(self.latency_s, 's')}>")

    def to_dict(self) -> dict:
        layers = []
        for layer, est in zip(self.node.layers, self.estimates):
            d = layer.to_dict()
            d.update(energy_j=est.energy_j, latency_s=est.latency_s, method=est.method)
            if est.engine:
                d.update(engine=est.engine, bound=est.bound, mapping=est.mapping)
            layers.append(d)
        origin = dict(self.node.origin)
        engine = self.engine
        if engine:
            origin["engine"] = engine
        out = {"name": self.name, "op": self.op, "kind": self.kind, "macs": self.macs,
               "ops": self.ops, "energy_j": self.energy_j, "latency_s": self.latency_s,
               "modeled": self.node.modeled, "method": self.method, "how": self.how,
               "origin": origin, "layers": layers}
        if engine:
            out["engine"] = engine
            out["engine_reason"] = next(e.engine_reason for e in self.estimates if e.engine)
        interval = self.interval()
        if interval:
            out["energy_j_interval"], out["latency_s_interval"] = interval
        if self.components:
            out["components"] = self.components
        if self.fused_into:
            out["fused_into"] = self.fused_into
        return out

    @property
    def engine(self) -> str | None:
        """The engine(s) that ran this node's MAC work, as the cost model's dispatch chose."""
        names = [e.engine for e in self.estimates if e.engine]
        return " + ".join(dict.fromkeys(names)) if names else None

    @property
    def components(self) -> dict:
        out: dict = {}
        for e in self.estimates:
            for k, v in (e.components or {}).items():
                out[k] = out.get(k, 0.0) + v
        return out

    def interval(self):
        """([energy lo, hi], [latency lo, hi]) where every estimate carries one."""
        if not self.estimates or not any(e.energy_interval for e in self.estimates):
            return None
        el = eh = tl = th = 0.0
        for e in self.estimates:
            ei = e.energy_interval or [e.energy_j, e.energy_j]
            ti = e.latency_interval or [e.latency_s, e.latency_s]
            el, eh, tl, th = el + ei[0], eh + ei[1], tl + ti[0], th + ti[1]
        return [el, eh], [tl, th]


@dataclass
class Profile:
    """The costed model: per-node energy (J) and latency (s), with totals and views."""

    nodes: list[NodeCost]
    model: dict
    accelerator: dict
    cost_model: dict
    batch: int = 1
    warnings: list[str] = field(default_factory=list)

    # ---- totals -------------------------------------------------------------------------
    total_macs = _total("macs", "nodes")
    total_ops = _total("ops", "nodes")
    total_energy_j = _total("energy_j", "nodes")
    total_latency_s = _total("latency_s", "nodes")

    @property
    def unmodeled(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            if not n.node.modeled:
                out[n.op] = out.get(n.op, 0) + 1
        return dict(sorted(out.items()))

    def by_kind(self) -> dict[str, dict]:
        """Aggregate over canonical layers by kind (a node lowered to an fc layer and an
        elementwise layer contributes to both). Unmodeled nodes appear as 'unmodeled'."""
        out: dict[str, dict] = {}

        def add(kind, macs, ops, energy, latency):
            row = out.setdefault(kind, {"count": 0, "macs": 0, "ops": 0, "energy_j": 0.0,
                                        "latency_s": 0.0})
            row["count"] += 1
            row["macs"] += macs
            row["ops"] += ops
            row["energy_j"] += energy
            row["latency_s"] += latency

        for n in self.nodes:
            if not n.node.modeled:
                add("unmodeled", 0, 0, 0.0, 0.0)
                continue
            for layer, est in zip(n.node.layers, n.estimates):
                add(layer.kind, layer.macs, layer.ops, est.energy_j, est.latency_s)
        return dict(sorted(out.items()))

    def by_module(self, depth: int = 1) -> dict[str, dict]:
        """Aggregate nodes by their module path cut to ``depth`` components (PyTorch
        models); nodes without a module path are grouped under their own name's prefix."""
        out: dict[str, dict] = {}
        for n in self.nodes:
            path = n.module or n.name
            key = ".".join(path.split(".")[:depth]) if depth > 0 else ""
            row = out.setdefault(key, {"nodes": 0, "macs": 0, "ops": 0, "energy_j": 0.0,
                                       "latency_s": 0.0})
            row["nodes"] += 1
            row["macs"] += n.macs
            row["ops"] += n.ops
            row["energy_j"] += n.energy_j
            row["latency_s"] += n.latency_s
        return out

    def top(self, k: int = 10, by: str = "energy_j") -> list[NodeCost]:
        if by not in ("energy_j", "latency_s", "macs"):
            raise ValueError("by must be 'energy_j', 'latency_s' or 'macs'")
        return sorted(self.nodes, key=lambda n: (-getattr(n, by), n.name))[:k]

    def grouped(self, nodes=None) -> list[tuple[NodeCost, bool]]:
        """``nodes`` (default: all, in graph order) with the ops each one's output pipeline
        absorbed listed right after it: [(node, absorbed?)]. An absorbed node whose
        producer is not among ``nodes`` keeps its own place."""
        nodes = self.nodes if nodes is None else nodes
        shown = {n.name for n in nodes}
        under: dict[str, list] = {}
        for n in self.nodes:
            if n.fused_into:
                under.setdefault(n.fused_into, []).append(n)
        out = []
        for n in nodes:
            if n.fused_into and n.fused_into in shown:
                continue
            out.append((n, bool(n.fused_into)))
            out += [(m, True) for m in under.get(n.name, ())]
        return out

    def check_modeled(self) -> None:
        """Raise UnmodeledError if any node could not be costed (``--strict``)."""
        if self.unmodeled:
            ops = ", ".join(f"{op} x{c}" for op, c in self.unmodeled.items())
            raise UnmodeledError(f"{sum(self.unmodeled.values())} node(s) have no cost model: "
                                 f"{ops}; drop --strict to cost the rest, or file an issue "
                                 "asking for a lowering of these ops")

    # ---- export -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "fodlam_version": __version__,
            "model": dict(self.model), "batch": self.batch,
            "accelerator": dict(self.accelerator), "cost_model": dict(self.cost_model),
            "total": self._total_dict(),
            "by_kind": self.by_kind(),
            "nodes": [n.to_dict() for n in self.nodes],
            "unmodeled": self.unmodeled,
            "warnings": list(self.warnings),
        }

    def _total_dict(self) -> dict:
        out = {"macs": self.total_macs, "ops": self.total_ops, "energy_j": self.total_energy_j,
               "latency_s": self.total_latency_s, "nodes": len(self.nodes),
               "unmodeled_nodes": sum(self.unmodeled.values())}
        intervals = [n.interval() for n in self.nodes]
        if any(intervals):
            el = eh = tl = th = 0.0
            for n, iv in zip(self.nodes, intervals):
                (a, b), (c, d) = iv or ([n.energy_j] * 2, [n.latency_s] * 2)
                el, eh, tl, th = el + a, eh + b, tl + c, th + d
            out["energy_j_interval"] = [el, eh]
            out["latency_s_interval"] = [tl, th]
        comps: dict = {}
        for n in self.nodes:
            for k, v in n.components.items():
                comps[k] = comps.get(k, 0.0) + v
        if comps:
            out["energy_j_by_component"] = comps
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The profile as JSON text. With ``indent`` (default) every top-level field is on
        its own line and every node on one line: readable, diff-able and fast to write.
        ``indent=None`` gives one compact line."""
        data = self.to_dict()
        if indent is None:
            return json.dumps(data, allow_nan=False, separators=(",", ":"))
        pad = " " * indent
        parts = []
        for key, value in data.items():
            if key == "nodes" and value:
                body = (",\n" + pad * 2).join(json.dumps(n, allow_nan=False) for n in value)
                parts.append(f'{pad}"nodes": [\n{pad * 2}{body}\n{pad}]')
            else:
                text = json.dumps(value, indent=indent, allow_nan=False).replace("\n", "\n" + pad)
                parts.append(f"{pad}{json.dumps(key)}: {text}")
        return "{\n" + ",\n".join(parts) + "\n}\n"

    def to_csv(self) -> str:
        """One row per node with every figure the JSON has that fits a column, under the
        JSON's names (docs/profile-schema.md), then ``how``."""
        from .report.views import records

        cols, rows = records(self)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols + ["how"])
        for n, r in zip(self.nodes, rows):
            writer.writerow([_csv_cell(r[c]) for c in cols] + [n.how])
        return buf.getvalue()

    def to_records(self) -> list[dict]:
        from .report.views import records

        return records(self)[1]

    def to_dataframe(self):
        """The per-node records as a pandas DataFrame (the CSV's columns)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Profile.to_dataframe() needs pandas: pip install pandas "
                              "(or pip install 'fodlam[report]')") from None
        from .report.views import records

        cols, rows = records(self)
        return pd.DataFrame.from_records(rows, columns=cols)

    to_pandas = to_dataframe

    def summary(self, depth: int = 2) -> str:
        """A module tree like torchinfo's: operations grouped under their module path down to
        ``depth``, with the module type, parameters, input and output shapes, MACs, J, s,
        share of the energy, and parameter and activation memory."""
        from .report.views import tree_lines

        return "\n".join(tree_lines(self, depth))

    # ---- display ------------------------------------------------------------------------
    def plot(self, top: int = 25, ax=None):
        """Per-layer energy and latency bars (matplotlib). Returns the Figure."""
        from .report import plots

        if ax is not None:
            plots.draw_layer_bars(ax[0], ax[1], self, top)
            return ax[0].figure
        import matplotlib.pyplot as plt

        n = min(top, len(self.nodes))
        fig, (ax_e, ax_t) = plt.subplots(1, 2, sharey=True, figsize=(10, max(3.0, 0.22 * n + 1.2)),
                                         layout="constrained")
        plots.draw_layer_bars(ax_e, ax_t, self, top)
        return fig

    def save_html(self, path, top: int = 25) -> None:
        from ._io import atomic_write
        from .report import html
        atomic_write(path, html.render(self, top))

    def summary_lines(self, top: int = 10) -> list[str]:
        from .report.table import render_table

        lines = [f"FODLAM profile of {self.model.get('name', '?')}: accelerator "
                 f"{self.accelerator.get('name', '?')}, cost model {self.cost_model.get('name')} "
                 f"({self.cost_model.get('mode')}), batch {self.batch}"]
        lines.append(f"total: {format_count(self.total_macs)} MACs, {format_si(self.total_energy_j, 'J')}, "
                     f"{format_si(self.total_latency_s, 's')} over {len(self.nodes)} "
                     f"node{'' if len(self.nodes) == 1 else 's'} ({_layer_count(self.nodes)})")
        if self.unmodeled:
            lines.append("unmodeled (not costed): " +
                         ", ".join(f"{op} x{c}" for op, c in self.unmodeled.items()))
        energy = self.total_energy_j or 1.0
        shown = self.nodes if top <= 0 or len(self.nodes) <= top else self.top(top)
        title = "nodes" if shown is self.nodes else f"top {len(shown)} nodes by energy"
        if any(n.fused_into for n in self.nodes):
            title += " (+ : absorbed by the output pipeline of the node above)"
        rows = [[("  + " if absorbed else "") + n.name, n.op, n.kind, format_count(n.macs),
                 format_si(n.energy_j, "J"), format_si(n.latency_s, "s"),
                 f"{100 * n.energy_j / energy:.1f}%", n.method]
                for n, absorbed in self.grouped(shown)]
        lines.append("")
        lines.append(title + ":")
        lines += render_table(["name", "op", "kind", "MACs", "energy", "latency", "%energy",
                               "method"], rows)
        lines.append("")
        lines.append("by kind:")
        lines += render_table(["kind", "count", "MACs", "ops", "energy", "latency"], [
            [k, v["count"], format_count(v["macs"]), format_count(v["ops"]),
             format_si(v["energy_j"], "J"), format_si(v["latency_s"], "s")]
            for k, v in self.by_kind().items()])
        if self.warnings:
            lines.append("")
            lines += [f"warning: {w}" for w in self.warnings]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.summary_lines())

    def __repr__(self) -> str:
        """One line of totals (``print(profile)`` gives the table)."""
        from .report.views import one_line

        return one_line(self)

    def _repr_html_(self) -> str:
        from .report.views import profile_display

        return profile_display(self)

    def _repr_markdown_(self) -> str:
        from .report.views import profile_display

        return profile_display(self, markdown=True)


def _layer_count(nodes) -> str:
    """"3 canonical layers": a node may lower to several (a Linear with its bias add), which
    is why the by-kind table can have more rows than there are nodes."""
    n = sum(len(x.node.layers) for x in nodes)
    return f"{n} canonical layer{'' if n == 1 else 's'}"


def _csv_cell(v):
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else v


def build_profile(nodes: list[Node], cost_model, *, network: dict, batch: int = 1,
                  warnings: list[str] | None = None) -> Profile:
    """Annotate every node with its cost on ``cost_model``. Unmodeled nodes are kept, with
    zero cost. ``network`` describes the model (name, format, source)."""
    from . import fusion

    pipeline = getattr(cost_model, "pipeline", None)
    fused = fusion.plan(nodes, pipeline.absorbs, pipeline.chains_from) if pipeline is not None else {}
    own = {}
    memo: dict = {}          # a layer repeated in the graph is costed once

    def estimate(layer, reference):
        key = (layer, reference)
        est = memo.get(key)
        if est is None:
            est = memo[key] = cost_model.estimate(layer, reference)
        return est
    for node in nodes:
        if node.modeled and node.name not in fused:
            own[node.name] = tuple(estimate(layer, node.reference if i == 0 else None)
                                   for i, layer in enumerate(node.layers))
    if fused:
        own.update(fusion.cost_chains(nodes, fused, own, cost_model,
                                      streamed=getattr(cost_model, "streamed", False)))
    if getattr(cost_model, "prefetch", False):     # weights fetched ahead, in graph order
        own.update(cost_model.prefetched([(n.name, own[n.name]) for n in nodes if n.name in own]))
    costed = []
    for node in nodes:
        estimates = own.get(node.name, ())
        if node.modeled and not estimates and node.layers:
            estimates = tuple(cost_model.estimate(layer) for layer in node.layers)
        costed.append(NodeCost(node, estimates, fused.get(node.name)))
    return Profile(nodes=costed, model=network, accelerator=cost_model.accelerator.to_dict(),
                   cost_model=cost_model.describe(), batch=batch, warnings=list(warnings or []))


def cost_imported(imported: Imported, cost_model, *, activation_density=None,
                  strict: bool = False) -> Profile:
    """The one tail of every importer: activation densities applied, every node costed,
    ``strict`` checked (an unmodeled node is then an error)."""
    nodes = apply_activation_density(imported.nodes, activation_density)
    profile = build_profile(nodes, cost_model, network=imported.network, batch=imported.batch,
                            warnings=imported.warnings)
    check_costs(profile)
    if strict:
        profile.check_modeled()
    return profile


def check_costs(profile) -> None:
    """Results are validated where they leave: every node's energy and latency (and so the
    totals) is a finite, non-negative number, or a one-line error naming the node and the
    profile (its figures, though each in range, combine into no finite cost)."""
    import math

    for n in profile.nodes:
        for what, v in (("energy", n.energy_j), ("latency", n.latency_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                acc = profile.accelerator.get("path") or profile.accelerator.get("name", "?")
                raise InputError(f"accelerator profile {acc}: node {n.name} costs {what} = {v!r}, "
                                 "not a finite, non-negative number: the profile's figures "
                                 "(clock, bandwidths, energies) overflow or underflow together; "
                                 "check them and their units")
    for what, v in (("energy", profile.total_energy_j), ("latency", profile.total_latency_s)):
        if not math.isfinite(v):
            raise InputError(f"the total {what} of {profile.model.get('name', '?')} is {v!r}: the "
                             "profile's figures overflow when summed; check them and their units")
