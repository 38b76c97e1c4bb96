"""The structure-only reader: a protobuf wire-format scan that keeps the graph and tensor
headers and never reads weight payloads or external data."""

from __future__ import annotations

import os
from pathlib import Path

from fodlam.errors import InputError, ModelError

import onnx
from onnx import TensorProto

from ._common import SMALL_CONSTANT, _Corrupt, _graphs


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

def _check_external_data(model, folder: Path) -> list[str]:
    """We never read external data (weights are not needed), but a location that escapes
    the model's folder is reported so nobody is misled about the file."""
    warnings = []
    root = folder.resolve()
    for what, tensor in _all_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / loc).resolve() if loc else root
        if os.path.isabs(loc) or (root not in target.parents and target != root):
            warnings.append(f"{what} '{tensor.name}' points at external data '{loc}' "
                            "outside the model's folder; it was not read")
    return warnings


def external_data_files(path) -> list[Path]:
    """The external-data files an ONNX model names inside its folder (read from its
    structure only: the files themselves are never opened): inputs a command must not
    overwrite."""
    path = Path(path)
    if not path.is_file():           # a FIFO, a device, a folder: nothing to open, ever
        return []
    try:
        model = load_structure(path)
    except Exception:  # noqa: BLE001 - an unreadable model has no external data to protect
        return []
    root = path.parent.resolve()
    out = []
    for _, tensor in _all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            loc = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if loc and not os.path.isabs(loc):
                target = (root / loc).resolve()
                if root in target.parents and target not in out:
                    out.append(target)
    return out


def _all_tensors(model):
    """(what, tensor) for every tensor a model holds: initializers, sparse initializers and
    the tensors in node attributes (Constant values and the like), in every subgraph."""
    from onnx import AttributeProto

    for graph in _graphs(model.graph):
        for init in graph.initializer:
            yield "initializer", init
        for sparse in graph.sparse_initializer:
            yield "sparse initializer", sparse.values
            yield "sparse initializer", sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == AttributeProto.TENSOR:
                    yield f"node '{node.name or node.op_type}' attribute", attr.t
                elif attr.type == AttributeProto.TENSORS:
                    for t in attr.tensors:
                        yield f"node '{node.name or node.op_type}' attribute", t
                elif attr.type == AttributeProto.SPARSE_TENSOR:
                    yield f"node '{node.name or node.op_type}' attribute", attr.sparse_tensor.values


# ---- a structure-only reader: graph and tensor headers, no weight payloads ---------------

def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf, pos: int, end: int):
    """(field number, wire type, start of field, start of payload, end of field)."""
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            payload = pos
            _, pos = _varint(buf, pos, end)
            yield field, wire, start, payload, pos
            continue
        if wire == 1:
            payload, pos = pos, pos + 8
        elif wire == 5:
            payload, pos = pos, pos + 4
        elif wire == 2:
            length, payload = _varint(buf, pos, end)
            pos = payload + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("field runs past the end of its message")
        yield field, wire, start, payload, pos


_TENSOR_PAYLOAD_FIELDS = {4, 5, 6, 7, 9, 10, 11}   # float/int32/string/int64/raw/double/uint64 data
_TENSOR_DIMS = 1


def _tensor_header(buf, start: int, end: int) -> bytes:
    """A TensorProto without its data when it holds more than SMALL_CONSTANT elements."""
    numel, has_dims = 1, False
    for field, wire, _s, payload, stop in _fields(buf, start, end):
        if field == _TENSOR_DIMS:
            has_dims = True
            if wire == 0:
                numel *= _varint(buf, payload, stop)[0]
            elif wire == 2:
                pos = payload
                while pos < stop:
                    d, pos = _varint(buf, pos, stop)
                    numel *= d
    if not has_dims or numel <= SMALL_CONSTANT:
        return bytes(buf[start:end])
    out = bytearray()
    for field, wire, s, payload, stop in _fields(buf, start, end):
        if field == _TENSOR_DIMS and wire == 0:
            out += buf[s:stop]
        elif field not in _TENSOR_PAYLOAD_FIELDS:
            out += buf[s:stop]
    # mark as "data elsewhere" so nothing mistakes the header for an empty tensor
    out += _enc_varint((14 << 3) | 0) + _enc_varint(TensorProto.EXTERNAL)
    return bytes(out)


def _structure_bytes(buf) -> bytes:
    """ModelProto bytes with large initializer payloads of the main graph left out."""
    end = len(buf)
    out = bytearray()
    for field, wire, s, payload, stop in _fields(buf, 0, end):
        if field == 7 and wire == 2:  # ModelProto.graph
            graph = bytearray()
            for gf, gw, gs, gp, ge in _fields(buf, payload, stop):
                if gf == 5 and gw == 2:  # GraphProto.initializer
                    t = _tensor_header(buf, gp, ge)
                    graph += _enc_varint((5 << 3) | 2) + _enc_varint(len(t)) + t
                else:
                    graph += buf[gs:ge]
            out += _enc_varint((7 << 3) | 2) + _enc_varint(len(graph)) + graph
        else:
            out += buf[s:stop]
    return bytes(out)


class _FileView:
    """Random access to a file through a few cached 64 KiB blocks: the scanner reads the
    graph and tensor headers and seeks over weight payloads, so a large model costs a few
    blocks of memory, not its size (a memory map would make every touched page resident)."""

    BLOCK = 1 << 16
    KEEP = 32

    def __init__(self, f, size: int):
        self.f = f
        self.size = size
        self.cache: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self.size

    def _block(self, index: int) -> bytes:
        data = self.cache.get(index)
        if data is None:
            self.f.seek(index * self.BLOCK)
            data = self.f.read(self.BLOCK)
            if len(self.cache) >= self.KEEP:
                self.cache.pop(next(iter(self.cache)))
            self.cache[index] = data
        return data

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop = key.start or 0, min(key.stop if key.stop is not None else self.size, self.size)
            if stop <= start:
                return b""
            first, last = start // self.BLOCK, (stop - 1) // self.BLOCK
            if last - first > 4:  # a long run (a node with a big constant): read it directly
                self.f.seek(start)
                return self.f.read(stop - start)
            data = b"".join(self._block(b) for b in range(first, last + 1))
            offset = first * self.BLOCK
            return data[start - offset:stop - offset]
        if key < 0 or key >= self.size:
            raise IndexError(key)
        return self._block(key // self.BLOCK)[key % self.BLOCK]


def load_structure(path) -> "onnx.ModelProto":
    """The model without its weights' payloads (shapes, names and small constants kept):
    large models cost little time and memory."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = _structure_bytes(_FileView(f, size))
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return model


def load(path) -> "onnx.ModelProto":
    p = Path(path)
    if not p.exists():
        raise InputError(f"model file {path} not found")
    if p.is_dir():
        raise InputError(f"{path} is a directory; give the .onnx file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if size == 0:
        raise ModelError(f"{path} is empty; it is not an ONNX model")
    try:
        try:
            model = load_structure(p)
        except (ValueError, IndexError, OverflowError):
            raise _Corrupt() from None
    except PermissionError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except MemoryError:
        raise
    except Exception as e:  # DecodeError, RuntimeWarning from protobuf, ...
        why = "malformed protobuf" if isinstance(e, _Corrupt) else type(e).__name__
        raise ModelError(f"{path} is not an ONNX model or is truncated/corrupt "
                         f"({why}); re-export it or check the download") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(f"{path} holds no ONNX graph (is it an ONNX file? empty graph?)")
    return model
