"""2017-style configurations: ``{"net": ..., "layers": [...]}`` or ``{"netfile": ..., "layers": [...]}``."""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import fodlam.calibration.published as cal
from fodlam import layers as L

from .errors import ConfigError
from .nodes import Imported, Node

#: Accepted spellings of the two reference networks.
NETWORKS = {"ALEXNET": "AlexNet", "VGG16": "VGG16", "VGG-16": "VGG16"}


@dataclass
class Config2017:
    source: str                 # file path or "<stdin>"
    layers: list[str]           # normalised, duplicates removed (the 2017 tool used a set)
    net: str | None = None      # "AlexNet" or "VGG16"
    netfile: Path | None = None
    duplicates: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return Path(self.source).stem if self.source != "<stdin>" else "stdin"


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def resolve_netfile(name: str, base_dir: Path) -> Path:
    """A netfile resolves next to the config file first, then among the bundled MAC files."""
    candidate = Path(name)
    if not candidate.is_absolute():
        candidate = base_dir / name
    if candidate.is_file():
        return candidate
    bundled = cal.NETS_DIR / Path(name).name
    if bundled.is_file():
        return bundled
    raise ConfigError(f"netfile '{name}' not found next to the config ({base_dir}) nor among the "
                      f"bundled MAC files ({', '.join(cal.bundled_netfiles())})"
                      f"{_suggest(Path(name).name, cal.bundled_netfiles())}")


def parse_config(text: str, source: str, base_dir: Path) -> Config2017:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a configuration is a JSON object with 'net' or 'netfile' "
                          "and 'layers'")
    has_net, has_netfile = "net" in data, "netfile" in data
    if has_net == has_netfile:
        raise ConfigError(f"{source}: give exactly one of 'net' (AlexNet or VGG16) or 'netfile' "
                          "(a per-layer MAC file)")
    layers = data.get("layers")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ConfigError(f"{source}: 'layers' must be a list of layer names, e.g. "
                          "[\"CONV1\", \"FC6\"]")
    seen: dict[str, None] = {}
    dups = []
    for name in layers:
        norm = cal.norm_layer_name(name)
        if norm in seen:
            dups.append(norm)
        seen[norm] = None
    cfg = Config2017(source=source, layers=list(seen), duplicates=tuple(dups))
    if has_net:
        net = data["net"]
        if not isinstance(net, str) or net.upper() not in NETWORKS:
            raise ConfigError(f"{source}: unknown net {net!r}; 'net' is AlexNet or VGG16 (for "
                              "another network use 'netfile' with a per-layer MAC file)")
        cfg.net = NETWORKS[net.upper()]
    else:
        if not isinstance(data["netfile"], str) or not data["netfile"]:
            raise ConfigError(f"{source}: 'netfile' must be a file name")
        cfg.netfile = resolve_netfile(data["netfile"], base_dir)
    return cfg


def load_config(path: str) -> Config2017:
    """Read a configuration from a file path, or from standard input for ``-``."""
    if path == "-":
        return parse_config(sys.stdin.read(), "<stdin>", Path.cwd())
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; give a configuration JSON file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; a configuration is a JSON file") from None
    return parse_config(text, str(path), p.resolve().parent)


def config_nodes(cfg: Config2017) -> list[Node]:
    """One node per listed layer: published lookups for ``net``, MAC counts for ``netfile``."""
    nodes = []
    if cfg.net:
        known = {m.name: m for m in cal.measurements() if m.network == cfg.net}
        for name in cfg.layers:
            if name not in known:
                raise ConfigError(f"{cfg.source}: unknown layer '{name}' for net {cfg.net}"
                                  f"{_suggest(name, known)} (known: {', '.join(known)})")
            m = known[name]
            op = "Convolution" if m.kind == "conv" else "InnerProduct"
            nodes.append(Node(name=name, op=op, layers=(m.layer,), reference=(cfg.net, name),
                              origin={"config": cfg.source, "net": cfg.net}))
        return nodes
    entries = {}
    for entry in cal.load_netfile(cfg.netfile):
        entries.setdefault(cal.norm_layer_name(entry.name), entry)
    for name in cfg.layers:
        if name not in entries:
            raise ConfigError(f"{cfg.source}: layer '{name}' is not in netfile {cfg.netfile.name}"
                              f"{_suggest(name, entries)}")
        entry = entries[name]
        kind = cal.CAFFE_KINDS.get(entry.type)
        if entry.macs is None or kind is None:
            raise ConfigError(f"{cfg.source}: layer '{name}' ({entry.type or 'no type'}) has no MAC "
                              f"count in {cfg.netfile.name}; only Convolution, Deconvolution and "
                              "InnerProduct layers can be costed; remove it from 'layers'")
        nodes.append(Node(name=name, op=entry.type, layers=(L.counted(kind, entry.macs),),
                          origin={"config": cfg.source, "netfile": cfg.netfile.name,
                                  "layer": entry.name}))
    return nodes


def config_imported(config) -> Imported:
    """A 2017 configuration (path, ``-`` for stdin, or a parsed Config2017) as an importer
    returns it: one node per listed layer, the network's description, and a warning per
    layer listed twice."""
    cfg = config if isinstance(config, Config2017) else load_config(str(config))
    warnings = [f"layer {d} listed more than once: costed once (as the 2017 tool did)"
                for d in cfg.duplicates]
    info = {"name": cfg.name, "format": "fodlam-2017-config", "source": cfg.source}
    if cfg.net:
        info["net"] = cfg.net
    else:
        info["netfile"] = cfg.netfile.name
    return Imported(nodes=config_nodes(cfg), network=info, warnings=warnings, batch=1)


def compat_output(profile) -> dict:
    """The 2017 tool's output: conv, fc and total, each with energy and latency."""
    out = {}
    for kind in ("conv", "fc"):
        rows = [n for n in profile.nodes if n.kind == kind]
        # an empty sum was the integer 0 in the 2017 tool
        out[kind] = {"energy": sum(n.energy_j for n in rows) if rows else 0,
                     "latency": sum(n.latency_s for n in rows) if rows else 0}
    out["total"] = {"energy": sum(n.energy_j for n in profile.nodes) if profile.nodes else 0,
                    "latency": sum(n.latency_s for n in profile.nodes) if profile.nodes else 0}
    return out
