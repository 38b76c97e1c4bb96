"""Accelerator profiles: TOML data files naming a cost model, a process node and sources."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_ACCELERATOR = "eyeriss-eie-65nm"


@dataclass(frozen=True)
class Accelerator:
    name: str
    description: str
    cost_model: str
    process_nm: float
    technology_scaling: str = "dennard"
    sources: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    path: str | None = None

    def at_node(self, node_nm: float, rule: str | None = None) -> "Accelerator":
        return replace(self, process_nm=float(node_nm),
                       technology_scaling=rule or self.technology_scaling,
                       name=f"{self.name}@{node_nm:g}nm")

    def to_dict(self) -> dict:
        out = {"name": self.name, "description": self.description,
               "cost_model": self.cost_model, "process_nm": self.process_nm,
               "technology_scaling": self.technology_scaling, "sources": dict(self.sources)}
        roof = self.params.get("roofline", {})
        for key in ("bytes_per_element", "peak_macs_per_s", "dram_bytes_per_s"):
            if key in roof:
                out[key] = roof[key]
        if self.path:
            out["path"] = self.path
        return out


def _accelerators_dir() -> Path:
    from fodlam.calibration import ACCELERATORS_DIR
    return ACCELERATORS_DIR


def bundled() -> list[str]:
    return sorted(p.stem for p in _accelerators_dir().glob("*.toml"))


def read_toml(path: Path, what: str = "") -> dict:
    """A TOML file as a dict; unreadable or malformed files are one-line ConfigErrors."""
    label = f"{what} {path}".strip()
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {label}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{label} is not valid TOML: {' '.join(str(e).split())}") from None


def _from_toml(path: Path) -> Accelerator:
    data = read_toml(path, "accelerator profile")
    missing = [k for k in ("name", "cost_model", "process_nm") if k not in data]
    if missing:
        raise ConfigError(f"accelerator profile {path} lacks {', '.join(missing)}; "
                          f"see calibration/accelerators/ for examples")
    try:
        node = float(data["process_nm"])
    except (TypeError, ValueError):
        raise ConfigError(f"accelerator profile {path}: process_nm must be a number") from None
    known = {"name", "description", "cost_model", "process_nm", "technology_scaling", "sources"}
    return Accelerator(name=str(data["name"]), description=str(data.get("description", "")),
                       cost_model=str(data["cost_model"]), process_nm=node,
                       technology_scaling=str(data.get("technology_scaling", "dennard")),
                       sources=dict(data.get("sources", {})),
                       params={k: v for k, v in data.items() if k not in known}, path=str(path))


def load_accelerator(spec: "str | Path | Accelerator | None" = None) -> Accelerator:
    """An accelerator by bundled name (``fodlam profiles`` lists them), by TOML path, or
    the default (``eyeriss-eie-65nm``) when ``spec`` is None."""
    if isinstance(spec, Accelerator):
        return spec
    spec = DEFAULT_ACCELERATOR if spec is None else spec
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"accelerator profile {path} not found")
        return _from_toml(path)
    candidate = _accelerators_dir() / f"{spec}.toml"
    if candidate.is_file():
        return _from_toml(candidate)
    raise ConfigError(f"unknown accelerator '{spec}'; bundled: {', '.join(bundled())}, "
                      "or give the path of a .toml profile")
