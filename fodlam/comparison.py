"""Accelerators side by side: one model costed on several profiles (``fodlam.profile(...,
accelerator=[...])``, ``--accelerator a,b,c``), with the figures a user choosing hardware
looks at first: total J and s, the bound, J per inference, inferences per second, and the
top layers of each."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .units import format_count, format_si

SCHEMA = "fodlam-comparison"


@dataclass
class Comparison:
    """Profiles of one model, one per accelerator, in the order asked for."""

    profiles: list

    def rows(self) -> list[dict]:
        from .report.views import dominant_bound

        out = []
        for p in self.profiles:
            b = max(1, p.batch)
            t, e = p.total_latency_s, p.total_energy_j
            out.append({"accelerator": p.accelerator.get("name", "?"), "macs": p.total_macs,
                        "energy_j": e, "latency_s": t, "bound": dominant_bound(p),
                        "energy_j_per_inference": e / b,
                        "inferences_per_s": b / t if t > 0 else None,
                        "top": [n.name for n in p.top(3)]})
        return out

    def best(self, by: str = "energy_j"):
        """The profile with the least ``energy_j``, ``latency_s`` or energy x latency
        (``edp``)."""
        if by == "edp":
            return min(self.profiles, key=lambda p: p.total_energy_j * p.total_latency_s)
        if by not in ("energy_j", "latency_s"):
            raise ValueError("by must be 'energy_j', 'latency_s' or 'edp'")
        return min(self.profiles, key=lambda p: getattr(p, f"total_{by}"))

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = ["accelerator", "energy", "latency", "bound", "J/inference", "inferences/s",
                  "top layers by energy"]
        rows = [[r["accelerator"], format_si(r["energy_j"], "J"), format_si(r["latency_s"], "s"),
                 r["bound"], format_si(r["energy_j_per_inference"], "J"),
                 f"{r['inferences_per_s']:.4g}" if r["inferences_per_s"] else "n/a",
                 ", ".join(r["top"])] for r in self.rows()]
        return header, rows

    def _title(self) -> str:
        p = self.profiles[0]
        return (f"FODLAM: {p.model.get('name', '?')} ({format_count(p.total_macs)} MACs, batch "
                f"{p.batch}) on {len(self.profiles)} accelerators")

    def summary_lines(self) -> list[str]:
        from .report.table import render_table

        header, rows = self._cells()
        lines = [self._title()] + render_table(header, rows)
        for by, label in (("energy_j", "least energy"), ("latency_s", "least latency"),
                          ("edp", "least energy x latency")):
            lines.append(f"{label}: {self.best(by).accelerator.get('name', '?')}")
        return lines

    def __str__(self) -> str:
        return "\n".join(self.summary_lines())

    def __repr__(self) -> str:
        names = ", ".join(p.accelerator.get("name", "?") for p in self.profiles)
        return (f"<fodlam.Comparison of {self.profiles[0].model.get('name', '?')} on {names}: "
                f"least energy {self.best('energy_j').accelerator.get('name', '?')}, least "
                f"latency {self.best('latency_s').accelerator.get('name', '?')}>")

    def _display(self, markdown: bool) -> str:
        from .report.views import html_summary, markdown_summary

        header, rows = self._cells()
        best = [(label, self.best(by).accelerator.get("name", "?")) for by, label in
                (("energy_j", "least energy"), ("latency_s", "least latency"),
                 ("edp", "least energy x latency"))]
        make = markdown_summary if markdown else html_summary
        return make(self._title(), best, header, rows, f"{len(rows)} accelerators side by side")

    def _repr_html_(self) -> str:
        return self._display(False)

    def _repr_markdown_(self) -> str:
        return self._display(True)

    def to_dict(self) -> dict:
        from ._version import __version__

        return {"schema": SCHEMA, "schema_version": 1, "fodlam_version": __version__,
                "model": dict(self.profiles[0].model), "batch": self.profiles[0].batch,
                "accelerators": self.rows(),
                "profiles": [p.to_dict() for p in self.profiles]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = ["accelerator", "macs", "energy_j", "latency_s", "bound",
                "energy_j_per_inference", "inferences_per_s"]
        w.writerow(cols)
        for r in self.rows():
            w.writerow([repr(r[c]) if isinstance(r[c], float) else ("" if r[c] is None else r[c])
                        for c in cols])
        return buf.getvalue()

    def save_html(self, path) -> None:
        """A page with the comparison table and each accelerator's top layers."""
        from ._io import atomic_write
        from .report.views import _STYLE, _html_table, _top_rows, TOP_HEADER
        import html

        header, rows = self._cells()
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>"
                 f"{html.escape(self._title())}</title>{_STYLE}</head><body class='fodlam-summary'>",
                 f"<h1>{html.escape(self._title())}</h1>", _html_table(header, rows)]
        for p in self.profiles:
            top = _top_rows(p, 10)
            parts.append(f"<h2>{html.escape(str(p.accelerator.get('name', '?')))}</h2>")
            parts.append(_html_table(TOP_HEADER, top,
                                     f"top {len(top)} of {len(p.nodes)} nodes by energy"))
        parts.append("</body></html>\n")
        from .units import xml_clean
        atomic_write(path, xml_clean("".join(parts)))
