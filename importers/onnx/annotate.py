"""The annotated-model writer (``fodlam-onnx --annotate``)."""

from __future__ import annotations


from fodlam.errors import InputError

import onnx

from .wire import load


def write_annotated(path, profile, out_path) -> None:
    """A copy of the model whose nodes carry their estimate (doc string and metadata, shown
    by Netron) and whose model metadata holds the totals. Weights stay where they were."""
    model = load(path)
    by_index = {n.node.origin.get("index"): n for n in profile.nodes}
    for i, node in enumerate(model.graph.node):
        cost = by_index.get(i)
        if cost is None:
            continue
        text = (f"FODLAM: {cost.macs} MACs, {cost.energy_j:.6g} J, {cost.latency_s:.6g} s, "
                f"kind {cost.kind}, {cost.method}: {cost.how}")
        node.doc_string = (node.doc_string + "\n" if node.doc_string else "") + text
        if hasattr(node, "metadata_props"):
            for key, value in (("fodlam.macs", cost.macs), ("fodlam.energy_j", repr(cost.energy_j)),
                               ("fodlam.latency_s", repr(cost.latency_s)), ("fodlam.kind", cost.kind),
                               ("fodlam.method", cost.method)):
                entry = node.metadata_props.add()
                entry.key, entry.value = key, str(value)
    for key, value in (("fodlam.total_macs", profile.total_macs),
                       ("fodlam.total_energy_j", repr(profile.total_energy_j)),
                       ("fodlam.total_latency_s", repr(profile.total_latency_s)),
                       ("fodlam.accelerator", profile.accelerator.get("name")),
                       ("fodlam.cost_model", f"{profile.cost_model.get('name')} "
                                             f"({profile.cost_model.get('mode')})"),
                       ("fodlam.batch", profile.batch)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    try:
        onnx.save(model, str(out_path))
    except OSError as e:
        raise InputError(f"cannot write {out_path}: {e.strerror or e}") from None

