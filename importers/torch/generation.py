"""Step 6 of the PyTorch front end: LLM generation traced as ``transformers`` runs it in
``generate``, returned as data (a ``GenerationTrace``); ``fodlam.llm`` costs it.

The prompt pass builds the model's own cache (whatever its class: dynamic, sliding-window,
hybrid, or a ``StaticCache``) and computes the logits of the last position only
(``logits_to_keep=1`` where the forward takes it); its logits give the first new token, so
``new_tokens - 1`` decode steps follow, each feeding one token per sequence and reading the
cache. All of it on fake (or, for a model on the meta device, meta) tensors in one fake
mode, so the traces hand each other the cache and no weight is read. Decode steps are
traced at sampled contexts (``fodlam.nodes.decode_contexts``), the cache grown between
them by traced chunks of tokens. Encoder-decoder models (T5, BART) run the encoder once.
"""

from __future__ import annotations

import inspect

from torch._subclasses.fake_tensor import FakeTensorMode

from fodlam.errors import InputError, ModelError
from fodlam.nodes import GenerationTrace, Imported, decode_contexts, positive_whole

from .inputs import _object_tensors
from .trace import trace

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


def _traced_element_bytes(model, dtype) -> float:
    """Bytes per element of the floating dtype the weights and cache were traced in."""
    import torch

    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return float(torch.empty((), dtype=dtype).element_size())
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    return float(p.element_size()) if p is not None else 0.0


def _bytes_of(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def import_steps(model, steps, *, dtype=None, moe_routing="balanced", weight_density=None,
                 probe=None):
    """Trace several forwards of one model that hand each other tensors (a prefill and the
    decode steps reading its KV cache), in one fake mode: ``steps`` is a list of
    ``(input_shape, forward_kwargs or a function of the previous step's output returning
    them)``. Returns ``[(Imported, output, probe(output))]``: ``probe`` looks at each output
    before the next step may change it (a cache grows in place)."""
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    out, previous = [], None
    for shape, kwargs in steps:
        if callable(kwargs):
            kwargs = kwargs(previous)
        outputs: list = []
        kwargs = dict(kwargs)
        inputs = kwargs.pop("inputs", None)
        nodes, info, batch = trace(model, shape, dtype=dtype, inputs=inputs,
                                   moe_routing=moe_routing, weight_density=weight_density,
                                   _fake_mode=fake_mode, _outputs=outputs, **kwargs)
        imported = Imported(nodes=nodes, network=info, batch=batch)
        previous = outputs[0] if outputs else None
        out.append((imported, previous, probe(previous) if probe else None))
    return out


#: where a model's configuration states how many positions it can attend over
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len",
                "max_sequence_length")


def check_context(model, prompt_len: int, new_tokens: int) -> None:
    """Prompt plus generated tokens within the model's own limit (the last generated token
    is never fed back), else a one-line error naming both; a model that states no limit, or
    attends over a sliding window of its cache, is traced as it runs."""
    cfg = getattr(model, "config", None)
    for key in CONTEXT_KEYS:
        limit = getattr(cfg, key, None)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            needed = prompt_len + new_tokens - 1
            if needed > limit:
                name = getattr(cfg, "_name_or_path", "") or type(model).__name__
                raise InputError(f"{name}: a prompt of {prompt_len} tokens and {new_tokens} generated "
                                 f"need {needed} positions, more than the model's {limit} ({key}); "
                                 "shorten the prompt or the generation")
            return


def trace_generation(model, prompt_len: int, new_tokens: int, *, batch: int = 1,
                     samples: int = 3, dtype=None, moe_routing: str = "balanced",
                     cache: str = "dynamic") -> GenerationTrace:
    """Trace a generation (see ``fodlam.generate_profile``): the prompt pass and the
    sampled decode steps, lowered, not costed."""
    import torch

    prompt_len = positive_whole(prompt_len, "prompt_len")
    new_tokens = positive_whole(new_tokens, "new_tokens")
    batch = positive_whole(batch, "batch")
    samples = positive_whole(samples, "samples")
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"generate_profile needs a torch.nn.Module (a causal language model), "
                         f"got {type(model).__name__}")
    if cache not in ("dynamic", "static"):
        raise InputError(f"cache must be 'dynamic' or 'static', not {cache!r}")
    encdec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    if encdec and cache == "static":
        raise InputError("cache='static' is for decoder-only models; an encoder-decoder model "
                         "keeps its self- and cross-attention caches dynamic here")
    check_context(model, prompt_len, new_tokens)
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
    contexts = decode_contexts(first, max(steps, 1), samples)
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
    except ModelError as e:           # the same kind (user code failing stays exit 1)
        raise type(e)(f"tracing generation with {type(model).__name__} failed: {e}") from None

    name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
    trace = GenerationTrace(name=name, prompt_len=prompt_len, new_tokens=new_tokens, batch=batch,
                            first=first, steps=steps, encdec=encdec,
                            weight_bytes=_bytes_of(list(model.parameters()) + list(model.buffers())),
                            element_bytes=_traced_element_bytes(model, dtype))
    for kind, (imported, _out, kv) in zip(kinds, traced):
        if kind == "chunk":
            continue
        imported.network["name"] = name
        if kind == "prefill":
            trace.prefill, trace.prefill_kv = imported, kv
        else:
            trace.decode.append((kind[1], imported, kv))
    return trace
