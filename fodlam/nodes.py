"""Node: one operation of an imported model, lowered to zero or more canonical layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .layers import MAC_KINDS, Layer


@dataclass
class Node:
    """An operation of the source model.

    ``origin`` says where it came from: for PyTorch ``{"module": "layer3.1.conv2",
    "module_type": "Conv2d", "aten": "aten.convolution.default"}``, for ONNX
    ``{"onnx_node": "...", "domain": "", "subgraph": ...}``. ``modeled`` is False when no
    lowering exists for ``op``: such a node is reported, never dropped.
    ``reference`` names a published measurement, (network, LAYER), for exact lookup.
    """

    name: str
    op: str
    layers: tuple[Layer, ...] = ()
    origin: dict = field(default_factory=dict)
    modeled: bool = True
    reference: tuple[str, str] | None = None
    note: str = ""

    @property
    def kind(self) -> str:
        if not self.modeled:
            return "unmodeled"
        for layer in self.layers:
            if layer.kind in MAC_KINDS:
                return layer.kind
        return self.layers[0].kind if self.layers else "data"

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def ops(self) -> int:
        return sum(layer.ops for layer in self.layers)
