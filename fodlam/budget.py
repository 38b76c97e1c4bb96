"""Energy / latency budgets and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from .units import format_si, parse_quantity


@dataclass(frozen=True)
class Budget:
    max_energy_j: float | None = None
    max_latency_s: float | None = None

    @classmethod
    def from_strings(cls, energy=None, latency=None) -> "Budget":
        return cls(None if energy is None else parse_quantity(energy, "energy"),
                   None if latency is None else parse_quantity(latency, "latency"))

    @property
    def empty(self) -> bool:
        return self.max_energy_j is None and self.max_latency_s is None


@dataclass
class Breach:
    metric: str        # "energy" or "latency"
    estimate: float
    limit: float

    @property
    def unit(self) -> str:
        return "J" if self.metric == "energy" else "s"

    @property
    def overshoot(self) -> float:
        return self.estimate - self.limit

    def describe(self) -> str:
        pct = f" (+{100 * self.overshoot / self.limit:.1f}%)" if self.limit > 0 else ""
        return (f"{self.metric} {format_si(self.estimate, self.unit)} exceeds the budget "
                f"{format_si(self.limit, self.unit)} by {format_si(self.overshoot, self.unit)}{pct}")


@dataclass
class BudgetResult:
    model: str
    budget: Budget
    energy_j: float
    latency_s: float
    breaches: list[Breach] = field(default_factory=list)
    top: list = field(default_factory=list)   # (name, energy_j, latency_s, label)

    @property
    def ok(self) -> bool:
        return not self.breaches

    def messages(self) -> list[str]:
        lines = [f"fodlam: budget exceeded for {self.model}: {b.describe()}" for b in self.breaches]
        if self.breaches:
            lines.append("top contributing nodes: " + "; ".join(
                f"{label} {format_si(e, 'J')}, {format_si(t, 's')}" for _, e, t, label in self.top))
        return lines


def node_label(node) -> str:
    """A node as a breach message names it: its name, and the module path and type (or the
    ONNX op type) it came from."""
    origin = node.node.origin
    what = origin.get("module_type") or origin.get("op_type") or node.kind
    module = origin.get("module")
    where = f"{module}, {what}" if module and module != node.name else what
    return f"{node.name} ({where})"


def check_profile(profile, budget: Budget, top: int = 5) -> BudgetResult:
    result = BudgetResult(model=str(profile.model.get("name", "?")), budget=budget,
                          energy_j=profile.total_energy_j, latency_s=profile.total_latency_s)
    if budget.max_energy_j is not None and profile.total_energy_j > budget.max_energy_j:
        result.breaches.append(Breach("energy", profile.total_energy_j, budget.max_energy_j))
    if budget.max_latency_s is not None and profile.total_latency_s > budget.max_latency_s:
        result.breaches.append(Breach("latency", profile.total_latency_s, budget.max_latency_s))
    by = "latency_s" if result.breaches and all(b.metric == "latency" for b in result.breaches) \
        else "energy_j"
    result.top = [(n.name, n.energy_j, n.latency_s, node_label(n)) for n in profile.top(top, by=by)]
    return result
