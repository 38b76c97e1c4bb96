"""The public API: import -> lower -> cost -> Profile, orchestrated in one place.

Each function names a model (``fodlam.sources.ModelRef`` or a live module), runs its
importer (which returns an ``Imported``: data, no cost), builds the cost model the
accelerator profile names (``fodlam.models``) and costs every node
(``fodlam.costed.cost_imported``)."""

from __future__ import annotations

from pathlib import Path

from . import models
from .accelerator import resolve
from .costed import cost_imported
from .errors import InputError
from .llm import cost_generation
from .sources import ModelRef, parse_positive_int


def run_config(config, *, accelerator=None, compat: bool = False):
    """Cost a 2017-style configuration (path, ``-`` for stdin, or a parsed Config2017)."""
    from .config2017 import config_imported

    # 2017 configurations are costed by the 2017 model (lookups of the published layers)
    cost_model = models.for_accelerator(accelerator, compat=compat, cost_model="fodlam-2017")
    return cost_imported(config_imported(config), cost_model)


def diagnose(accelerator=None, compat: bool = False) -> dict:
    """What ``fodlam diagnose`` prints: the 2017 model's reference layers with their cost per
    MAC at the accelerator's normalisation, and the average per kind."""
    model = models.for_accelerator(accelerator, compat=compat, cost_model="fodlam-2017")
    return {"cost_model": model.name, "mode": model.mode, "normalisation": model.normalisation,
            "layers": model.per_mac_table(),
            "average": {k: {"energy_j_per_mac": r.energy_j_per_mac,
                            "latency_s_per_mac": r.latency_s_per_mac,
                            "layers": r.layers, "macs": r.macs}
                        for k, r in model.rates.items()}}


def profile(model, input_shape=None, *, accelerator=None, batch=None, dtype=None, inputs=None,
            strict: bool = False, cost_model: str | None = None, node: float | None = None,
            moe_routing: str = "balanced", weight_density=None, activation_density=None,
            **forward_kwargs):
    """Profile a PyTorch module without running its arithmetic (fake tensors: no weights
    read). See ``fodlam.importers.torch``.

    ``input_shape``: a tuple for one input, a list of tuples for several; ``inputs``:
    example tensors (real, meta or fake) instead of shapes; ``batch`` overrides the leading
    dimension; ``dtype``: the floating dtype the model is traced in (its floating inputs
    and parameters take it, so its MAC layers take that width; a token model's ids stay
    int64; an integer dtype sets the inputs' type only); ``accelerator``: bundled profile name, TOML path or Accelerator
    (default eyeriss-eie-65nm), or a list of them: the model is imported once and costed on
    each, side by side (a ``fodlam.comparison.Comparison``); ``cost_model``: override the profile's model
    ("fodlam-shape", "fodlam-2017", "fodlam-roofline"); ``node``: rescale the profile to
    another process node (nm); ``strict``: an unmodeled node is an error; ``moe_routing``:
    how a mixture-of-experts layer's tokens reach its experts, "balanced" (default: tokens
    x top-k spread evenly) or "concentrated" (all to the same k experts);
    ``weight_density``: "measure" (count the non-zero weights; pruning masks applied), a
    number, or ``{module path: number}``; ``activation_density``: a number or ``{node name
    or module path: number}``. Densities reach the fc layers (the sparse engine uses them)
    and are reported per layer; convolutions are costed dense. Other keyword arguments go
    to the model's forward."""
    from fodlam.importers.torch import import_module

    _check_batch(batch)
    imported = import_module(model, input_shape, batch=batch, dtype=dtype, inputs=inputs,
                             moe_routing=moe_routing, weight_density=weight_density,
                             **forward_kwargs)
    if _several(accelerator):
        return _cost_on_each(imported, accelerator, node, cost_model, None, activation_density,
                             strict)
    return cost_imported(imported, _cost_model(accelerator, node, cost_model),
                         activation_density=activation_density, strict=strict)


def profile_onnx(path, *, accelerator=None, input_shapes=None, dims=None, batch=None,
                 strict: bool = False, cost_model: str | None = None, node: float | None = None,
                 weight_density=None, activation_density=None):
    """Profile an ONNX file. See ``fodlam.importers.onnx``. ``input_shapes``: ``{input
    name: shape}``; ``dims``: ``{symbolic dimension: value}``; ``weight_density``:
    "measure" (read the weights and count their non-zeros; opt-in, the default never reads
    them) or a number for every fc weight; ``activation_density``: a number, or ``{node
    name: number}``."""
    _check_batch(batch)
    ref = ModelRef.onnx(path, input_shapes=dict(input_shapes or {}), dims=dims, batch=batch)
    return profile_ref(ref, accelerator=accelerator, strict=strict, cost_model=cost_model,
                       node=node, weight_density=weight_density,
                       activation_density=activation_density)


def profile_ref(ref: ModelRef, *, accelerator=None, strict: bool = False,
                cost_model: str | None = None, node: float | None = None, rule: str | None = None,
                dtype=None, weight_density=None, activation_density=None, batch=None):
    """Profile the model a ``ModelRef`` names (what every command does); a list of
    accelerators gives a ``fodlam.comparison.Comparison``."""
    if _several(accelerator):
        from .comparison import Comparison

        if ref.kind == "config2017":
            return Comparison([run_config(ref.source, accelerator=resolve(a, node, rule))
                               for a in accelerator])
        imported = ref.load(batch=batch, dtype=dtype, weight_density=weight_density)
        return _cost_on_each(imported, accelerator, node, cost_model, rule, activation_density,
                             strict)
    if ref.kind == "config2017":
        return run_config(ref.source, accelerator=resolve(accelerator, node, rule))
    imported = ref.load(batch=batch, dtype=dtype, weight_density=weight_density)
    return cost_imported(imported, _cost_model(accelerator, node, cost_model, rule),
                         activation_density=activation_density, strict=strict)


def _several(accelerator) -> bool:
    return isinstance(accelerator, (list, tuple))


def _cost_on_each(imported, accelerators, node, cost_model, rule, activation_density, strict):
    """One import, costed on every accelerator: a ``Comparison``."""
    from .comparison import Comparison

    if not accelerators:
        raise InputError("accelerator=[]: name at least one accelerator to compare")
    return Comparison([cost_imported(imported, _cost_model(a, node, cost_model, rule),
                                     activation_density=activation_density, strict=strict)
                       for a in accelerators])


def _check_batch(batch) -> None:
    if batch is not None:
        parse_positive_int(batch, "batch")


def _cost_model(accelerator, node=None, cost_model=None, rule=None):
    return models.for_accelerator(resolve(accelerator, node, rule), cost_model=cost_model)


def generate_profile(model, prompt_len: int, new_tokens: int, *, batch: int = 1,
                     accelerator=None, cost_model: str | None = None, node: float | None = None,
                     samples: int = 3, dtype=None, moe_routing: str = "balanced",
                     cache: str = "dynamic"):
    """Profile LLM generation: a prefill pass over ``prompt_len`` tokens, then the decode
    steps that produce ``new_tokens`` tokens per sequence, each reading the KV cache (see
    ``fodlam.llm``). ``model``: a causal (or encoder-decoder) language model, e.g. a
    ``transformers`` model built from its config on the meta device, or the path of an
    ONNX decoder exported with its KV cache as inputs. Returns a ``fodlam.llm.GenerationProfile``: ``prefill``,
    ``decode_first`` and ``decode_last`` (Profiles), ``time_to_first_token_s``,
    ``decode_latency_s_per_token``, ``decode_energy_j_per_token``, ``tokens_per_s``,
    ``energy_per_token_j``, ``total_energy_j``, ``total_latency_s``, ``kv_cache_bytes``,
    ``decode_bytes_per_step``, ``decode_bytes_per_token`` (per step over the batch) and
    ``bound`` per phase. The importers trace the generation
    (data: a ``fodlam.nodes.GenerationTrace``); ``fodlam.llm.cost_generation`` costs it."""
    if isinstance(model, (str, Path)):
        if not str(model).lower().endswith(".onnx"):
            raise InputError(f"{model}: give an ONNX file (a decoder exported with its KV cache) "
                             "or a torch.nn.Module")
        from fodlam.importers.onnx import trace_generation_onnx

        trace = trace_generation_onnx(model, prompt_len, new_tokens, batch=batch, samples=samples)
    else:
        from fodlam.importers.torch import trace_generation

        trace = trace_generation(model, prompt_len, new_tokens, batch=batch, samples=samples,
                                 dtype=dtype, moe_routing=moe_routing, cache=cache)
    return cost_generation(trace, models.for_accelerator(resolve(accelerator, node),
                                                         cost_model=cost_model))


def sweep(spec, *, jobs: int | None = None, backend: str = "local", address: str | None = None,
          cache=None, output=None, parquet: bool = True, quiet: bool = True):
    """Run a design-space sweep: ``spec`` is a SWEEP.toml path (or a loaded
    ``fodlam.sweeps.Sweep``). Returns the result (``.rows``: one dict per point, in sweep
    order; ``.failed_models``; ``.computed`` / ``.cached``). ``cache``: a folder (or a
    ``pyarrow.fs`` URI) that keeps finished chunks as Parquet parts with an index (resume,
    extend); ``output``: a prefix to write PREFIX.csv (and
    PREFIX.parquet with ``parquet=True``). ``backend="ray"`` runs on Ray (``address`` of a
    cluster, or a local one). See docs/sweeps.md."""
    from . import sweeps as S

    plan = spec if isinstance(spec, S.Sweep) else S.load_sweep(spec)
    result = S.run(plan, jobs=jobs, backend=backend, address=address, cache_path=cache, quiet=quiet)
    if output is not None:
        prefix = Path(output)
        S.write_csv(prefix.with_name(prefix.name + ".csv"), plan, result.iter_rows())
        if parquet:
            S.write_parquet(prefix.with_name(prefix.name + ".parquet"), plan, result)
    return result
