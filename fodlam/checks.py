"""``fodlam check``: budget files, baselines, JUnit XML and GitHub step summaries.

A budget file is ``fodlam.toml`` or the ``[tool.fodlam]`` table of ``pyproject.toml``::

    [tool.fodlam]
    accelerator = "eyeriss-eie-65nm"          # default for every model (optional)

    [[tool.fodlam.models]]
    name = "classifier"
    onnx = "models/classifier.onnx"          # relative to the budget file
    dims = { batch = 1 }                     # optional: --dim / --input-shape / --batch
    max_energy = "5 mJ"
    max_latency = "12 ms"

    [[tool.fodlam.models]]
    name = "tiny-cnn"
    torch = "mypkg.models:tiny_cnn"          # module:factory (or path/to/file.py:factory)
    input_shape = [1, 3, 64, 64]             # or input_shapes = [[...], [...]]
    max_energy = "1 mJ"

In ``fodlam.toml`` the same keys may also stand at the top level (``[[models]]``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .budget import Budget, BudgetResult, check_profile
from .errors import ConfigError, FodlamError, InputError
from .sources import ModelRef
from .units import format_si, xml_document

CHECK_SCHEMA = "fodlam-check"
CHECK_SCHEMA_VERSION = 1


@dataclass
class BudgetEntry:
    """One model of a budget file: the model (a ``ModelRef``), its accelerator and budget."""

    name: str
    ref: ModelRef
    budget: Budget = field(default_factory=Budget)
    accelerator: str | None = None
    source: str = ""                 # the model as the file names it (reports)
    base_dir: Path = Path(".")


def find_config(explicit: str | None = None, start: Path | None = None) -> Path:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise InputError(f"budget file {explicit} not found")
        return p
    here = (start or Path.cwd()).resolve()
    # the nearest folder, this one or one above it, with fodlam.toml or a pyproject.toml
    # holding [tool.fodlam] (as git, pytest and ruff find their files)
    for folder in (here, *here.parents):
        for candidate in (folder / "fodlam.toml", folder / "pyproject.toml"):
            if candidate.is_file():
                if candidate.name == "pyproject.toml":
                    from .accelerator import read_toml

                    data = read_toml(candidate)
                    if not isinstance(data.get("tool"), dict) or "fodlam" not in data["tool"]:
                        continue
                return candidate
    raise InputError(f"no budget file in {here} or any folder above it: create fodlam.toml or "
                     "a [tool.fodlam] table in pyproject.toml (see the README), or pass "
                     "--config FILE")


def load_config(path: Path) -> tuple[list[BudgetEntry], dict]:
    from .accelerator import read_toml

    data = read_toml(path)
    tool = data.get("tool")
    table = tool.get("fodlam") if isinstance(tool, dict) else None
    if table is None:
        table = data if path.name != "pyproject.toml" else None
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [tool.fodlam] table")
    models = table.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{path}: list the models to check as [[tool.fodlam.models]] (or "
                          "[[models]] in fodlam.toml), each with onnx= or torch=")
    default_acc = table.get("accelerator")
    if default_acc is not None and not isinstance(default_acc, str):
        raise ConfigError(f"{path.name}: accelerator must be a profile name or a .toml path (a string)")
    base = path.resolve().parent
    specs, names = [], set()
    for i, entry in enumerate(models):
        where = f"{path.name}: models[{i}]"
        ref, = ModelRef.from_table(entry, where, base, extra_keys=("accelerator", "max_energy",
                                                                    "max_latency"))
        name = ref.name
        if name in names:
            raise ConfigError(f"{where}: model name '{name}' is used twice")
        names.add(name)
        try:
            budget = Budget.from_strings(entry.get("max_energy"), entry.get("max_latency"))
        except FodlamError as e:
            raise ConfigError(f"{where} ({name}): {e}") from None
        if budget.empty:
            raise ConfigError(f"{where} ({name}): set max_energy and/or max_latency")
        if not isinstance(entry.get("accelerator", ""), str):
            raise ConfigError(f"{where} ({name}): accelerator must be a profile name or a .toml path")
        source = ref.source if ref.kind == "onnx" else str(entry["torch"])
        specs.append(BudgetEntry(name=name, ref=ref, budget=budget, source=source, base_dir=base,
                                 accelerator=entry.get("accelerator", default_acc)))
    return specs, table


def profile_entry(entry: BudgetEntry):
    """The entry's model, imported and costed on its accelerator."""
    from . import models
    from .costed import cost_imported

    return cost_imported(entry.ref.load(), models.for_accelerator(_acc(entry)))


def _acc(spec: BudgetEntry):
    if spec.accelerator and str(spec.accelerator).endswith(".toml"):
        return str((spec.base_dir / spec.accelerator).resolve())
    return spec.accelerator


# ---- running the checks -----------------------------------------------------------------

@dataclass
class ModelCheck:
    spec: BudgetEntry
    result: BudgetResult | None
    profile: object | None
    error: str | None = None
    exit_code: int = 2               # of the error: 1 for the model's own code, 2 otherwise
    seconds: float = 0.0
    baseline: dict | None = None
    regressions: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None and self.result.ok and not self.regressions

    def nodes_summary(self) -> dict:
        return {n.name: {"energy_j": n.energy_j, "latency_s": n.latency_s}
                for n in self.profile.nodes} if self.profile else {}

    def to_dict(self) -> dict:
        out = {"name": self.spec.name, "source": self.spec.source, "ok": self.ok,
               "seconds": round(self.seconds, 3)}
        if self.error:
            out["error"] = self.error
            return out
        r = self.result
        out.update(energy_j=r.energy_j, latency_s=r.latency_s,
                   max_energy_j=r.budget.max_energy_j, max_latency_s=r.budget.max_latency_s,
                   macs=self.profile.total_macs,
                   accelerator=self.profile.accelerator.get("name"),
                   breaches=[{"metric": b.metric, "estimate": b.estimate, "limit": b.limit,
                              "overshoot": b.overshoot} for b in r.breaches],
                   top=[{"name": n, "energy_j": e, "latency_s": t, "where": w} for n, e, t, w in r.top],
                   nodes=self.nodes_summary())
        if self.baseline is not None:
            out["baseline"] = self.baseline
            out["regressions"] = self.regressions
        return out


def _progress(done: int, n: int, name: str) -> None:
    """Before model ``done + 1`` of ``n`` (``name``); ``done == n`` closes the bar."""
    if n < 2:
        return
    stream = sys.stderr
    if stream.isatty():
        width = 24
        filled = int(width * done / n)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{n} {name[:40]:40s}")
        if done == n:
            stream.write("\n")
        stream.flush()
    elif done < n:
        stream.write(f"fodlam: [{done + 1}/{n}] {name}\n")


def run_checks(specs: list[BudgetEntry], baseline: dict | None = None,
               max_regression: float | None = None) -> list[ModelCheck]:
    checks = []
    base_models = {m["name"]: m for m in (baseline or {}).get("models", [])}
    for i, spec in enumerate(specs):
        _progress(i, len(specs), spec.name)
        t = time.perf_counter()
        try:
            prof = profile_entry(spec)
            result = check_profile(prof, spec.budget)
            check = ModelCheck(spec, result, prof)
        except FodlamError as e:
            check = ModelCheck(spec, None, None, error=str(e), exit_code=e.exit_code)
        except Exception as e:  # noqa: BLE001 - every budget listed is checked or reported
            msg = " ".join(str(e).split())[:300]
            check = ModelCheck(spec, None, None, error=f"internal error: {type(e).__name__}: {msg}")
        check.seconds = time.perf_counter() - t
        if baseline is not None and check.error is None:
            _compare(check, base_models.get(spec.name), max_regression)
        checks.append(check)
    _progress(len(specs), len(specs), "done")
    return checks


def _compare(check: ModelCheck, old: dict | None, max_regression: float | None) -> None:
    if not old or "energy_j" not in old:
        check.baseline = {"missing": True}
        return
    r = check.result
    delta = {}
    for metric, now in (("energy_j", r.energy_j), ("latency_s", r.latency_s)):
        before = old[metric]
        rel = (now - before) / before if before else (0.0 if now == before else float("inf"))
        delta[metric] = {"before": before, "after": now, "change": now - before, "relative": rel}
        if max_regression is not None and rel > max_regression:
            check.regressions.append({"metric": metric.split("_")[0], "relative": rel,
                                      "limit": max_regression})
    old_nodes = old.get("nodes", {})
    new_nodes = check.nodes_summary()
    changes = []
    for name in set(old_nodes) | set(new_nodes):
        a = old_nodes.get(name, {}).get("energy_j", 0.0)
        b = new_nodes.get(name, {}).get("energy_j", 0.0)
        if a != b:
            changes.append({"name": name, "before_j": a, "after_j": b, "change_j": b - a})
    changes.sort(key=lambda c: (-abs(c["change_j"]), c["name"]))
    delta["layers_changed_most"] = changes[:5]
    check.baseline = delta


# ---- reporting --------------------------------------------------------------------------

def _headroom(value: float, limit: float | None) -> str:
    if limit is None:
        return "-"
    if limit == 0:
        return "0%"
    return f"{100 * (limit - value) / limit:+.1f}%"


def table_lines(checks: list[ModelCheck]) -> list[str]:
    from .report.table import render_table

    rows = []
    for c in checks:
        if c.error:
            rows.append([c.spec.name, "-", "-", "-", "-", "-", "-", "ERROR"])
            continue
        r = c.result
        status = "ok" if c.ok else ("REGRESSION" if r.ok else "OVER BUDGET")
        rows.append([c.spec.name,
                     format_si(r.energy_j, "J"),
                     format_si(r.budget.max_energy_j, "J") if r.budget.max_energy_j is not None else "-",
                     _headroom(r.energy_j, r.budget.max_energy_j),
                     format_si(r.latency_s, "s"),
                     format_si(r.budget.max_latency_s, "s") if r.budget.max_latency_s is not None else "-",
                     _headroom(r.latency_s, r.budget.max_latency_s), status])
    lines = render_table(["model", "energy", "budget", "headroom", "latency", "budget",
                          "headroom", "status"], rows)
    for c in checks:
        if c.error:
            lines.append(f"fodlam: {c.spec.name}: error: {c.error}")
        elif c.result.breaches:
            lines += [m.replace(f"for {c.result.model}", f"for {c.spec.name}")
                      for m in c.result.messages()]
        if c.baseline and not c.baseline.get("missing"):
            e = c.baseline["energy_j"]
            t = c.baseline["latency_s"]
            lines.append(f"{c.spec.name}: vs baseline energy {100 * e['relative']:+.2f}% "
                         f"({format_si(e['change'], 'J')}), latency {100 * t['relative']:+.2f}% "
                         f"({format_si(t['change'], 's')})")
            for ch in c.baseline["layers_changed_most"][:3]:
                lines.append(f"    {ch['name']}: {format_si(ch['before_j'], 'J')} -> "
                             f"{format_si(ch['after_j'], 'J')}")
            for reg in c.regressions:
                lines.append(f"fodlam: regression for {c.spec.name}: {reg['metric']} rose "
                             f"{100 * reg['relative']:.2f}%, more than the allowed "
                             f"{100 * reg['limit']:.2f}%")
        elif c.baseline and c.baseline.get("missing"):
            lines.append(f"{c.spec.name}: not in the baseline (new model)")
    return lines


def to_json(checks: list[ModelCheck]) -> str:
    return json.dumps({"schema": CHECK_SCHEMA, "schema_version": CHECK_SCHEMA_VERSION,
                       "ok": all(c.ok for c in checks),
                       "models": [c.to_dict() for c in checks]}, indent=2, allow_nan=False)


def markdown_summary(checks: list[ModelCheck]) -> str:
    lines = ["### FODLAM energy / latency budgets", "",
             "| model | energy | budget | latency | budget | status |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for c in checks:
        if c.error:
            lines.append(f"| {c.spec.name} | - | - | - | - | :x: error: {c.error} |")
            continue
        r = c.result
        status = ":white_check_mark: ok" if c.ok else ":x: " + ", ".join(
            [b.metric + " over budget" for b in r.breaches] +
            [reg["metric"] + " regression" for reg in c.regressions])
        eb = format_si(r.budget.max_energy_j, "J") if r.budget.max_energy_j is not None else "-"
        tb = format_si(r.budget.max_latency_s, "s") if r.budget.max_latency_s is not None else "-"
        lines.append(f"| {c.spec.name} | {format_si(r.energy_j, 'J')} | {eb} | "
                     f"{format_si(r.latency_s, 's')} | {tb} | {status} |")
    return "\n".join(lines) + "\n"


@xml_document
def junit_xml(checks: list[ModelCheck]) -> str:
    failures = sum(1 for c in checks if not c.ok and not c.error)
    errors = sum(1 for c in checks if c.error)
    total = sum(c.seconds for c in checks)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="fodlam" tests="{len(checks)}" failures="{failures}" '
           f'errors="{errors}" time="{total:.3f}">',
           f'  <testsuite name="fodlam.budgets" tests="{len(checks)}" failures="{failures}" '
           f'errors="{errors}" time="{total:.3f}">']
    for c in checks:
        head = (f'    <testcase classname="fodlam.budgets" name={quoteattr(c.spec.name)} '
                f'time="{c.seconds:.3f}"')
        if c.error:
            out.append(head + ">")
            out.append(f'      <error message={quoteattr(c.error)}/>')
            out.append("    </testcase>")
        elif not c.ok:
            msg = "; ".join([b.describe() for b in c.result.breaches] +
                            [f"{r['metric']} regression {100 * r['relative']:.2f}%" for r in c.regressions])
            out.append(head + ">")
            out.append(f"      <failure message={quoteattr(msg)}>{escape(chr(10).join(table_lines([c])))}</failure>")
            out.append("    </testcase>")
        else:
            out.append(head + "/>")
    out += ["  </testsuite>", "</testsuites>"]
    return "\n".join(out) + "\n"


def write_github_summary(checks: list[ModelCheck]) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown_summary(checks))
    except OSError as e:
        print(f"fodlam: warning: cannot write GITHUB_STEP_SUMMARY ({e})", file=sys.stderr)


def parse_percent(text: str) -> float:
    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise InputError(f"--max-regression {text!r}: give a percentage such as 5% (or 0.05)") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"--max-regression {text!r}: give a finite, non-negative percentage such as 5%")
    return value


def load_baseline(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"baseline {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read baseline {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"baseline {path} is not valid JSON: {e.msg} at line {e.lineno} "
                         f"column {e.colno}") from None
    if not isinstance(data, dict) or data.get("schema") != CHECK_SCHEMA or not isinstance(
            data.get("models"), list):
        raise InputError(f"baseline {path} is not a saved 'fodlam check --json' result")
    names = set()
    for i, m in enumerate(data["models"]):
        where = f"baseline {path}: models[{i}]"
        if not isinstance(m, dict):
            raise InputError(f"{where} is not an object; regenerate the baseline with 'fodlam check --json'")
        if not isinstance(m.get("name"), str) or not m["name"]:
            raise InputError(f"{where} has no name; regenerate the baseline with 'fodlam check --json'")
        if m["name"] in names:
            raise InputError(f"{where}: model '{m['name']}' appears twice")
        names.add(m["name"])
        for key in ("energy_j", "latency_s"):
            if key in m:
                v = m[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise InputError(f"{where} ({m['name']}): {key} = {v!r} is not a finite, "
                                     "non-negative number")
        if ("energy_j" in m) != ("latency_s" in m):
            raise InputError(f"{where} ({m['name']}): give both energy_j and latency_s")
        nodes = m.get("nodes", {})
        if not isinstance(nodes, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("energy_j", 0.0), (int, float))
                and not isinstance(v.get("energy_j", 0.0), bool) and math.isfinite(v.get("energy_j", 0.0))
                for v in nodes.values()):
            raise InputError(f"{where} ({m['name']}): nodes must map names to {{\"energy_j\": number}}")
    return data
