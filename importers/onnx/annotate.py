"""The annotated-model writer (``fodlam-onnx --annotate``)."""

from __future__ import annotations


from fodlam.errors import InputError

import onnx

from .wire import _check_external_data, load


#: above this, the annotated copy keeps its weights in a ``.data`` file beside it
INLINE_LIMIT = 1 << 30


def _full_model(path):
    """The model with its weights, for a copy that runs: the protobuf as written, and its
    external data read only from inside the model's folder (never from a path that
    escapes it)."""
    from pathlib import Path

    model = load(path)                       # validates the file first, structure only
    escaping = _check_external_data(model, Path(path).resolve().parent)
    if escaping:
        raise InputError(f"--annotate copies the weights, but {escaping[0].split(';')[0]}; "
                         "move the data file beside the model")
    try:
        full = onnx.load(str(path), load_external_data=False)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in full.graph.initializer):
            from onnx.external_data_helper import load_external_data_for_model
            load_external_data_for_model(full, str(Path(path).resolve().parent))
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - a missing or short data file
        raise InputError(f"--annotate could not read the weights of {path}: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]}") from None
    return full


def write_annotated(path, profile, out_path) -> None:
    """A copy of the model whose nodes carry their estimate (doc string and metadata, shown
    by Netron) and whose model metadata holds the totals. The weights are copied: inline,
    or into ``OUT.onnx.data`` beside it above 1 GiB, so the copy loads and runs."""
    model = _full_model(path)
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
    from pathlib import Path

    from fodlam._io import atomic_path
    try:
        with atomic_path(out_path) as tmp:
            if model.ByteSize() > INLINE_LIMIT:
                # the weights go to OUT.onnx.data (named by the final model, which refers to
                # it), the model itself lands atomically once they are written
                onnx.save_model(model, str(tmp), save_as_external_data=True,
                                all_tensors_to_one_file=True, location=Path(out_path).name + ".data")
            else:
                onnx.save(model, str(tmp))
    except OSError as e:
        raise InputError(f"cannot write {out_path}: {e.strerror or e}") from None

