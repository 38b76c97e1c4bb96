"""Generation from an ONNX decoder exported with its KV cache as inputs: the prompt pass
and sampled decode steps, each the graph imported at the symbolic sizes of that step,
returned as data (a ``GenerationTrace``); ``fodlam.llm`` costs it.
"""

from __future__ import annotations

from pathlib import Path

from fodlam.errors import InputError
from fodlam.nodes import GenerationTrace, decode_contexts, positive_whole

_ONNX_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2, 17: 1,
               18: 1, 19: 1, 20: 1}


def _onnx_dims(vi) -> list:
    return [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
            for d in vi.type.tensor_type.shape.dim]


def trace_generation_onnx(path, prompt_len: int, new_tokens: int, *, batch: int = 1,
                          samples: int = 3) -> GenerationTrace:
    """An ONNX decoder exported with its KV cache as inputs (``past_key_values.*`` /
    ``past_*`` of a symbolic past length, and ``present.*`` outputs): the prompt pass is
    the graph with the past length 0 and the sequence length the prompt; a decode step at
    context c, the sequence length 1 and the past length c. Symbols are read from the
    graph's inputs: the token input's (batch, sequence), the past inputs' past length, and
    an attention mask's total length (past + sequence) where it has its own."""
    from .walk import import_file
    from .wire import load

    prompt_len = positive_whole(prompt_len, "prompt_len")
    new_tokens = positive_whole(new_tokens, "new_tokens")
    batch = positive_whole(batch, "batch")
    samples = positive_whole(samples, "samples")
    model = load(path)
    init = {i.name for i in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in init]
    tokens = next((vi for vi in inputs if vi.type.tensor_type.elem_type in (6, 7)
                   and len(_onnx_dims(vi)) == 2 and "mask" not in vi.name.lower()
                   and "position" not in vi.name.lower()), None)
    past = [vi for vi in inputs if "past" in vi.name.lower() and len(_onnx_dims(vi)) >= 3]
    if tokens is None or not past or not isinstance(_onnx_dims(tokens)[1], str):
        raise InputError(f"{path}: generation needs a decoder exported with its KV cache: token "
                         "ids of a symbolic sequence length and past key/value inputs of a "
                         "symbolic past length (e.g. an optimum 'with-past' export); this graph "
                         "has " + ("no past inputs" if not past else "no symbolic token input")
                         + "; profile its one pass with fodlam-onnx, or give the PyTorch model")
    b_sym, seq = _onnx_dims(tokens)
    past_syms = {d for vi in past for d in _onnx_dims(vi) if isinstance(d, str) and d != b_sym}
    if len(past_syms) != 1:
        raise InputError(f"{path}: the past key/value inputs should share one symbolic past "
                         f"length; found {sorted(past_syms) or 'none'}")
    (past_sym,) = past_syms
    total = {d for vi in inputs if "mask" in vi.name.lower() for d in _onnx_dims(vi)
             if isinstance(d, str) and d not in (b_sym, seq, past_sym)}

    def dims(n, c):
        out = {seq: n, past_sym: c}
        if isinstance(b_sym, str):
            out[b_sym] = batch
        out.update({t: n + c for t in total})
        return out
    steps = new_tokens - 1
    contexts = decode_contexts(prompt_len, max(steps, 1), samples)
    name = Path(path).stem
    trace = GenerationTrace(name=name, prompt_len=prompt_len, new_tokens=new_tokens, batch=batch,
                            first=prompt_len, steps=steps)
    trace.prefill = import_file(path, dims=dims(prompt_len, 0))
    trace.prefill.network["name"] = name

    def cache_bytes(positions):
        total_b = 0
        for vi in past:
            n = _ONNX_BYTES.get(vi.type.tensor_type.elem_type, 4)
            for d in _onnx_dims(vi):
                n *= positions if d == past_sym else batch if d == b_sym else (d or 1)
            total_b += n
        return total_b
    trace.prefill_kv = cache_bytes(prompt_len)
    for c in contexts:
        imported = import_file(path, dims=dims(1, c))
        imported.network["name"] = name
        trace.decode.append((c, imported, cache_bytes(c + 1)))
    trace.weight_bytes = sum(_ONNX_BYTES.get(t.data_type, 4) * _prod(t.dims)
                             for t in model.graph.initializer)
    floats = [_ONNX_BYTES.get(t.data_type, 4) for t in model.graph.initializer
              if t.data_type in (1, 10, 11, 16)]          # float, float16, double, bfloat16
    trace.element_bytes = float(max(set(floats), key=floats.count)) if floats else 0.0
    return trace


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n
