"""LLM inference as it runs: a prefill pass over the prompt, then decode steps that each
read the KV cache (``fodlam.generate_profile``, ``fodlam llm``).

The model is traced as ``transformers`` runs it in ``generate``: the prompt pass builds the
model's own cache (whatever its class: dynamic, sliding-window, hybrid) and computes the
logits of the last position only (``logits_to_keep=1`` where the forward takes it); its
logits give the first new token, so ``new_tokens - 1`` decode steps follow, each feeding
one token per sequence and reading the cache. All of it on fake (or, for a model on the
meta device, meta) tensors in one fake mode, so the traces hand each other the cache and
no weight is read.

Decode steps are sampled, not traced one by one: a step is traced at the first and the
last context of the generation (and the middle one), the cache being grown between them by
traced chunks of tokens; the steps in between are interpolated linearly between the
sampled ones. The MACs of a step are exactly linear in its context (the attention products
grow by one key and value per position; the weight GEMMs do not change), so the MAC total
is exact; latency and energy are interpolated, which is exact where the cost model is
linear in the context and within the two neighbouring samples otherwise.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, ModelError

#: JSON schema of ``GenerationProfile.to_dict``
SCHEMA = "fodlam-generation"
SCHEMA_VERSION = 1


@dataclass
class Step:
    """One sampled decode step: its context (tokens already in the cache) and totals."""

    context: int
    latency_s: float
    energy_j: float
    macs: int


@dataclass
class GenerationProfile:
    """Prefill and decode of a causal language model on an accelerator. Times in seconds,
    energies in joules, bytes at the model's own precision."""

    model: dict
    accelerator: dict
    prompt_len: int
    new_tokens: int
    batch: int
    prefill: object                      # Profile of the prompt pass
    decode_first: object                 # Profile of the first decode step
    decode_last: object                  # Profile of the last decode step
    samples: list = field(default_factory=list)       # [Step], the sampled decode steps
    decode_steps: int = 0
    decode_latency_s: float = 0.0        # all decode steps
    decode_energy_j: float = 0.0
    decode_macs: int = 0
    kv_cache_bytes: int = 0              # at the end of generation
    weight_bytes: int = 0
    decode_bytes_per_token: float = 0.0  # weights + cache read by a decode step, mean
    bound: dict = field(default_factory=dict)
    how: str = ""
    warnings: list = field(default_factory=list)

    # ---- the figures users ask for -------------------------------------------------------
    @property
    def time_to_first_token_s(self) -> float:
        return self.prefill.total_latency_s

    @property
    def decode_latency_s_per_token(self) -> float:
        """Mean time of a decode step: the time between two tokens of a sequence (each step
        produces one token for every sequence of the batch)."""
        if self.decode_steps:
            return self.decode_latency_s / self.decode_steps
        return self.decode_first.total_latency_s

    @property
    def decode_energy_j_per_token(self) -> float:
        """Mean energy of a decode step per token it produces (per sequence of the batch)."""
        if self.decode_steps:
            return self.decode_energy_j / (self.decode_steps * self.batch)
        return self.decode_first.total_energy_j / self.batch

    @property
    def total_latency_s(self) -> float:
        return self.prefill.total_latency_s + self.decode_latency_s

    @property
    def total_energy_j(self) -> float:
        return self.prefill.total_energy_j + self.decode_energy_j

    @property
    def total_macs(self) -> int:
        return self.prefill.total_macs + self.decode_macs

    @property
    def generated_tokens(self) -> int:
        return self.batch * self.new_tokens

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens (all sequences) over the whole time, prefill included."""
        return self.generated_tokens / self.total_latency_s if self.total_latency_s else 0.0

    @property
    def energy_per_token_j(self) -> float:
        """All energy, prefill included, over the generated tokens."""
        return self.total_energy_j / self.generated_tokens

    KEYS = ("time_to_first_token_s", "decode_latency_s_per_token", "decode_energy_j_per_token",
            "tokens_per_s", "energy_per_token_j", "total_energy_j", "total_latency_s",
            "kv_cache_bytes", "decode_bytes_per_token")

    def to_dict(self) -> dict:
        from ._version import __version__

        out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "fodlam_version": __version__,
               "model": dict(self.model), "accelerator": dict(self.accelerator),
               "prompt_len": self.prompt_len, "new_tokens": self.new_tokens,
               "batch": self.batch}
        out.update({k: getattr(self, k) for k in self.KEYS})
        out.update(total_macs=self.total_macs, decode_steps=self.decode_steps,
                   weight_bytes=self.weight_bytes, bound=dict(self.bound), how=self.how,
                   decode_samples=[vars(s) for s in self.samples],
                   prefill=self.prefill.to_dict(), decode_first=self.decode_first.to_dict(),
                   decode_last=self.decode_last.to_dict(), warnings=list(self.warnings))
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"

    def summary_lines(self) -> list[str]:
        from .report.table import render_table
        from .units import format_count, format_si

        lines = [f"FODLAM generation profile of {self.model.get('name', '?')} on "
                 f"{self.accelerator.get('name', '?')}: prompt {self.prompt_len} tokens, "
                 f"{self.new_tokens} new tokens, batch {self.batch}"]
        rows = [
            ["time to first token", format_si(self.time_to_first_token_s, "s"),
             f"prefill, {self.bound.get('prefill', '?')}"],
            ["decode latency per token", format_si(self.decode_latency_s_per_token, "s"),
             f"mean of {self.decode_steps} step(s), {self.bound.get('decode', '?')}"],
            ["decode energy per token", format_si(self.decode_energy_j_per_token, "J"), ""],
            ["tokens per second", f"{self.tokens_per_s:.4g} tokens/s",
             f"{self.generated_tokens} generated tokens, prefill included"],
            ["energy per token", format_si(self.energy_per_token_j, "J"), "prefill included"],
            ["total energy", format_si(self.total_energy_j, "J"), ""],
            ["total latency", format_si(self.total_latency_s, "s"), ""],
            ["KV cache at the end", format_si(self.kv_cache_bytes, "B"), ""],
            ["bytes read per decode step", format_si(self.decode_bytes_per_token, "B"),
             f"weights {format_si(self.weight_bytes, 'B')} + cache, mean"],
            ["MACs", format_count(self.total_macs),
             f"prefill {format_count(self.prefill.total_macs)}, decode "
             f"{format_count(self.decode_macs)}"],
        ]
        lines += render_table(["figure", "value", "note"], rows)
        lines.append("")
        lines.append(self.how)
        lines += [f"warning: {w}" for w in self.warnings]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.summary_lines())

    def save_html(self, path) -> None:
        """The report page: figures with units, decode steps against context, time by kind
        per phase, top nodes (needs matplotlib)."""
        from ._io import atomic_write
        from .report.html import render_generation

        atomic_write(path, render_generation(self))


# ---- tracing -----------------------------------------------------------------------------

def _cache_kwarg(model) -> str:
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise InputError(f"{type(model).__name__} is not a causal language model FODLAM can "
                     "generate with: its forward takes no 'past_key_values' (or 'cache'); "
                     "give a transformers ...ForCausalLM (built from a config or loaded), or "
                     "profile one forward pass with fodlam.profile")


def _cache_of(output):
    for name in ("cache", "past_key_values"):
        try:
            value = getattr(output, name, None)
        except Exception:  # noqa: BLE001 - a deprecated alias may warn or raise
            value = None
        if value is not None:
            return value
    if isinstance(output, (tuple, list)) and len(output) > 1:
        return output[1]
    raise ModelError("the model's forward returned no KV cache (use_cache=True gave none); "
                     "FODLAM needs a causal language model that returns its cache")


def parse_positive_int(value, what: str) -> int:
    """A positive whole number (an int, or a string of one), else a one-line InputError."""
    try:
        n = int(value) if not isinstance(value, bool) and str(value).strip().lstrip("+").isdigit() \
            else None
    except (TypeError, ValueError):
        n = None
    if n is None or n < 1:
        raise InputError(f"{what} must be a positive whole number, not {value!r}")
    return n


def _contexts(prompt_len: int, steps: int, samples: int) -> list[int]:
    """The cache lengths at which decode steps are traced: the first and the last step's
    (and evenly spaced ones between), at most ``samples``."""
    if steps <= 1:
        return [prompt_len]
    first, last = prompt_len, prompt_len + steps - 1
    k = max(2, min(samples, steps))
    return sorted({first + round(i * (last - first) / (k - 1)) for i in range(k)})


def _interpolated_sum(pts: list, first: int, steps: int) -> float:
    """Sum over the decode steps at contexts first .. first+steps-1 of a value sampled at
    some of them (``pts``: [(context, value)], ascending), linear between samples."""
    total = 0.0
    for c in range(first, first + steps):
        for (c0, v0), (c1, v1) in zip(pts, pts[1:]):
            if c0 <= c <= c1:
                total += v0 + (v1 - v0) * (c - c0) / (c1 - c0) if c1 > c0 else v0
                break
        else:
            total += pts[-1][1] if c > pts[-1][0] else pts[0][1]
    return total


def _bytes_of(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _dominant_bound(profile) -> str:
    by: dict = {}
    for n in profile.nodes:
        for e in n.estimates:
            if e.bound:
                key = e.bound.split(" + ")[0]
                by[key] = by.get(key, 0.0) + e.latency_s
    return max(by, key=by.get) if by else "element-wise"


def trace_generation(model, prompt_len: int, new_tokens: int, *, batch: int = 1,
                     samples: int = 3, dtype=None, moe_routing: str = "balanced",
                     cache: str = "dynamic") -> "GenerationTrace":
    """Trace a generation (see ``generate_profile``): the prompt pass and the sampled
    decode steps, lowered, not costed."""
    import torch

    from .importers.torch import import_steps

    prompt_len = parse_positive_int(prompt_len, "prompt_len")
    new_tokens = parse_positive_int(new_tokens, "new_tokens")
    batch = parse_positive_int(batch, "batch")
    samples = parse_positive_int(samples, "samples")
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"generate_profile needs a torch.nn.Module (a causal language model), "
                         f"got {type(model).__name__}")
    if cache not in ("dynamic", "static"):
        raise InputError(f"cache must be 'dynamic' or 'static', not {cache!r}")
    encdec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    if encdec and cache == "static":
        raise InputError("cache='static' is for decoder-only models; an encoder-decoder model "
                         "keeps its self- and cross-attention caches dynamic here")
    cache_kw = _cache_kwarg(model)
    params = inspect.signature(model.forward).parameters
    base = {"use_cache": True}
    if "logits_to_keep" in params:
        base["logits_to_keep"] = 1          # generate() computes the last position's logits
    steps = new_tokens - 1
    if encdec:
        # the prompt goes through the encoder once, with the decoder's start token (whose
        # logits give the first new token); each decode step then reads the decoder's
        # self-attention cache (one position per token so far) and the cross-attention
        # cache of the prompt
        if getattr(model, "main_input_name", "input_ids") != "input_ids" or \
                "decoder_input_ids" not in params:
            raise InputError(f"{type(model).__name__}: generate_profile costs encoder-decoder "
                             "models that take input_ids and decoder_input_ids (T5, BART); "
                             f"this one takes {getattr(model, 'main_input_name', '?')}: profile "
                             "its encoder and one decoder step with fodlam.profile")
        first = 1

        def ids(n):
            return torch.zeros(batch, n, dtype=torch.long)

        def after(out, n, b=base):
            enc = getattr(out, "encoder_last_hidden_state", None)
            if enc is None:
                enc = after.encoder
            after.encoder = enc
            return dict(b, **{cache_kw: _cache_of(out), "encoder_outputs": (enc,),
                              "inputs": {"decoder_input_ids": ids(n)}})
        after.encoder = None
        plan = [(None, dict(base, inputs={"input_ids": ids(prompt_len), "decoder_input_ids": ids(1)}))]
        grow = (lambda n: (None, lambda out, n=n: after(out, n)))
    else:
        first = prompt_len
        plan = [((batch, prompt_len), dict(base))]
        if cache == "static":
            from transformers import StaticCache

            plan[0][1][cache_kw] = StaticCache(config=model.config,
                                               max_cache_len=prompt_len + new_tokens)
        grow = (lambda n: ((batch, n), lambda out, b=base: dict(b, **{cache_kw: _cache_of(out)})))
    contexts = _contexts(first, max(steps, 1), samples)
    kinds = ["prefill"]
    length = first
    for c in contexts:
        if c > length:          # grow the cache to the next sampled context: a traced chunk
            plan.append(grow(c - length))
            kinds.append("chunk")
            length = c
        plan.append(grow(1))
        kinds.append(("decode", c))
        length += 1
    from .importers.torch import _object_tensors

    def cache_bytes(output):
        """Bytes of the cache's keys and values (tensors of three or more dimensions; its
        bookkeeping counters are not)."""
        try:
            cache = _cache_of(output)
        except ModelError:
            return 0
        return _bytes_of(t for t in _object_tensors(cache) if t.dim() >= 3)

    try:
        traced = import_steps(model, plan, dtype=dtype, moe_routing=moe_routing, probe=cache_bytes)
    except InputError:
        raise
    except ModelError as e:
        raise ModelError(f"tracing generation with {type(model).__name__} failed: {e}") from None

    name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
    trace = GenerationTrace(name=name, prompt_len=prompt_len, new_tokens=new_tokens, batch=batch,
                            first=first, steps=steps, encdec=encdec,
                            weight_bytes=_bytes_of(list(model.parameters()) + list(model.buffers())))
    for kind, (imported, _out, kv) in zip(kinds, traced):
        if kind == "chunk":
            continue
        imported.network["name"] = name
        if kind == "prefill":
            trace.prefill, trace.prefill_kv = imported, kv
        else:
            trace.decode.append((kind[1], imported, kv))
    return trace


@dataclass
class GenerationTrace:
    """What ``trace_generation`` records: the lowered prompt pass and sampled decode steps
    (data only, picklable: a sweep costs it on many accelerators)."""

    name: str
    prompt_len: int
    new_tokens: int
    batch: int
    first: int                         # the first decode step's context
    steps: int                         # decode steps (new_tokens - 1)
    encdec: bool = False
    weight_bytes: int = 0
    prefill: object = None             # Imported
    prefill_kv: int = 0
    decode: list = field(default_factory=list)     # [(context, Imported, cache bytes after)]


#: bytes of ONNX element types (TensorProto.DataType) for the cache and weight sizes
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
    from .importers.onnx import import_file
    from .importers.onnx.wire import load

    prompt_len = parse_positive_int(prompt_len, "prompt_len")
    new_tokens = parse_positive_int(new_tokens, "new_tokens")
    batch = parse_positive_int(batch, "batch")
    samples = parse_positive_int(samples, "samples")
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
                         "has " + (f"no past inputs" if not past else "no symbolic token input")
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
    contexts = _contexts(prompt_len, max(steps, 1), samples)
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
    return trace


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


def cost_generation(trace: GenerationTrace, cm) -> GenerationProfile:
    """A traced generation costed on one cost model."""
    from .costed import cost_imported

    prompt_len, new_tokens, batch = trace.prompt_len, trace.new_tokens, trace.batch
    first, steps = trace.first, trace.steps
    prefill = cost_imported(trace.prefill, cm)
    decode = [(c, cost_imported(imp, cm)) for c, imp, _ in trace.decode]
    read = [kv for _, _, kv in trace.decode]
    weight_bytes = trace.weight_bytes
    samples_ = [Step(c, p.total_latency_s, p.total_energy_j, p.total_macs) for c, p in decode]
    gen = GenerationProfile(model=dict(prefill.model, prompt_len=prompt_len),
                            accelerator=prefill.accelerator,
                            prompt_len=prompt_len, new_tokens=new_tokens, batch=batch,
                            prefill=prefill, decode_first=decode[0][1],
                            decode_last=decode[-1][1], samples=samples_, decode_steps=steps,
                            weight_bytes=weight_bytes)
    if steps:
        def total(attr):
            return _interpolated_sum([(x.context, getattr(x, attr)) for x in samples_], first, steps)
        gen.decode_latency_s = total("latency_s")
        gen.decode_energy_j = total("energy_j")
        gen.decode_macs = int(round(total("macs")))
    # the cache at the end holds the prompt and every token fed back (the last generated
    # token never is): after the last decode step, exactly what was traced; a decode step
    # reads the cache it leaves (its context and its own token), interpolated between samples
    gen.kv_cache_bytes = int(read[-1]) if steps else int(trace.prefill_kv)
    reads = [(c, float(b)) for (c, _), b in zip(decode, read)]
    mean_read = (_interpolated_sum(reads, first, steps) / steps if steps
                 else float(read[0]))
    gen.decode_bytes_per_token = weight_bytes + mean_read
    gen.bound = {"prefill": _dominant_bound(gen.prefill), "decode": _dominant_bound(gen.decode_last)}
    gen.how = ((f"the encoder over {prompt_len} tokens and the decoder's start token"
                if trace.encdec else f"prefill of {prompt_len} tokens") +
               f" x {batch} sequence(s) (logits of the last "
               f"position only), then {steps} decode step(s); decode traced at context(s) "
               f"{', '.join(str(c) for c, _ in decode)} and interpolated linearly between "
               "them (exact for the MACs: attention grows linearly with the context; the "
               "weight GEMMs do not change)")
    gen.warnings = sorted({w for p in [gen.prefill] + [p for _, p in decode] for w in p.warnings})
    return gen


def generate_profile(model, prompt_len: int, new_tokens: int, *, batch: int = 1,
                     accelerator=None, cost_model: str | None = None, node: float | None = None,
                     samples: int = 3, dtype=None, moe_routing: str = "balanced",
                     cache: str = "dynamic") -> GenerationProfile:
    """Profile generation with a causal language model (or an encoder-decoder one: T5,
    BART): a prefill pass over ``prompt_len`` tokens for each of ``batch`` sequences, then
    the decode steps that produce ``new_tokens`` tokens per sequence, each reading the KV
    cache. The model may be built on the meta device (no weights, seconds for 7B). Returns
    a ``GenerationProfile`` (``prefill``, ``decode_first``, ``decode_last`` Profiles;
    ``time_to_first_token_s``, ``decode_latency_s_per_token``,
    ``decode_energy_j_per_token``, ``tokens_per_s``, ``energy_per_token_j``,
    ``total_energy_j``, ``total_latency_s``, ``kv_cache_bytes``, ``decode_bytes_per_token``,
    ``bound``). ``samples``: how many decode steps are traced (the rest are interpolated);
    ``dtype``: the floating dtype to trace in; ``cache``: ``"dynamic"`` (the model's default
    cache, growing with the context) or ``"static"`` (a ``transformers.StaticCache`` of
    ``prompt_len + new_tokens`` positions, as ``generate(cache_implementation="static")``
    builds it: every step attends over all of them, masked)."""
    from . import models
    from .accelerator import resolve

    if isinstance(model, (str, Path)):
        if not str(model).lower().endswith(".onnx"):
            raise InputError(f"{model}: give an ONNX file (a decoder exported with its KV cache) "
                             "or a torch.nn.Module")
        trace = trace_generation_onnx(model, prompt_len, new_tokens, batch=batch, samples=samples)
    else:
        trace = trace_generation(model, prompt_len, new_tokens, batch=batch, samples=samples,
                                 dtype=dtype, moe_routing=moe_routing, cache=cache)
    return cost_generation(trace, models.for_accelerator(resolve(accelerator, node),
                                                         cost_model=cost_model))
