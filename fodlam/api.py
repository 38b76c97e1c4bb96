"""The functions behind the public API and the CLI."""

from __future__ import annotations

from . import models
from .accelerator import load_accelerator


def cost_model_for(accelerator=None, *, compat: bool = False, cost_model: str | None = None):
    acc = load_accelerator(accelerator)
    return models.build(cost_model or acc.cost_model, acc, compat=compat)


def run_config(config, *, accelerator=None, compat: bool = False):
    """Cost a 2017-style configuration (path, ``-`` for stdin, or a parsed Config2017)."""
    from .config2017 import Config2017, config_nodes, load_config
    from .profile import build_profile

    cfg = config if isinstance(config, Config2017) else load_config(str(config))
    # 2017 configurations are costed by the 2017 model (lookups of the published layers)
    model = cost_model_for(accelerator, compat=compat, cost_model="fodlam-2017")
    warnings = [f"layer {d} listed more than once: costed once (as the 2017 tool did)"
                for d in cfg.duplicates]
    info = {"name": cfg.name, "format": "fodlam-2017-config", "source": cfg.source}
    if cfg.net:
        info["net"] = cfg.net
    else:
        info["netfile"] = cfg.netfile.name
    return build_profile(config_nodes(cfg), model, model=info, batch=1, warnings=warnings)


def profile(model, input_shape=None, *, accelerator=None, batch=None, dtype=None, inputs=None,
            strict: bool = False, cost_model: str | None = None, node: float | None = None,
            moe_routing: str = "balanced", weight_density=None, activation_density=None,
            **forward_kwargs):
    """Profile a PyTorch module without running its arithmetic. See fodlam.importers.torch.

    ``accelerator``: bundled profile name, TOML path or Accelerator (default eyeriss-eie-65nm);
    ``cost_model``: override the profile's model ("fodlam-shape", "fodlam-2017");
    ``node``: rescale the profile to another process node (nm);
    ``moe_routing``: how a mixture-of-experts layer's tokens reach its experts, "balanced"
    (default: tokens x top-k spread evenly) or "concentrated" (all to the same k experts);
    ``weight_density``: "measure" (count the non-zero weights; pruning masks applied), a
    number, or ``{module path: number}``; ``activation_density``: a number or ``{node name
    or module path: number}``. Densities reach the fc layers (the sparse engine uses them)
    and are reported per layer; convolutions are costed dense."""
    from fodlam.importers.torch import profile_module

    return profile_module(model, input_shape, accelerator=_acc(accelerator, node), batch=batch,
                          dtype=dtype, inputs=inputs, strict=strict, cost_model=cost_model,
                          moe_routing=moe_routing, weight_density=weight_density,
                          activation_density=activation_density, **forward_kwargs)


def profile_onnx(path, *, accelerator=None, input_shapes=None, dims=None, batch=None,
                 strict: bool = False, cost_model: str | None = None, node: float | None = None,
                 weight_density=None, activation_density=None):
    """Profile an ONNX file. See fodlam.importers.onnx. ``weight_density``: "measure" (read
    the weights and count their non-zeros; opt-in, the default never reads them) or a number
    for every fc weight; ``activation_density``: a number, or ``{node name: number}``."""
    from fodlam.importers.onnx import profile_file

    return profile_file(path, accelerator=_acc(accelerator, node), input_shapes=input_shapes,
                        dims=dims, batch=batch, strict=strict, cost_model=cost_model,
                        weight_density=weight_density, activation_density=activation_density)


def _acc(accelerator, node=None, rule=None):
    acc = load_accelerator(accelerator)
    if node is not None or rule is not None:
        acc = acc.at_node(float(node) if node is not None else acc.process_nm, rule)
    return acc


def sweep(spec, *, jobs: int | None = None, backend: str = "local", address: str | None = None,
          cache=None, output=None, parquet: bool = True, quiet: bool = True):
    """Run a design-space sweep: ``spec`` is a SWEEP.toml path (or a loaded
    ``fodlam.sweeps.Sweep``). Returns the result (``.rows``: one dict per point, in sweep
    order; ``.failed_models``; ``.computed`` / ``.cached``). ``cache``: a JSONL file that
    keeps finished points (resume, extend); ``output``: a prefix to write PREFIX.csv (and
    PREFIX.parquet with ``parquet=True``). ``backend="ray"`` runs on Ray (``address`` of a
    cluster, or a local one). See docs/sweeps.md."""
    from . import sweeps as S

    plan = spec if isinstance(spec, S.Sweep) else S.load_sweep(spec)
    result = S.run(plan, jobs=jobs, backend=backend, address=address, cache_path=cache, quiet=quiet)
    if output is not None:
        from pathlib import Path
        prefix = Path(output)
        S.write_csv(prefix.with_name(prefix.name + ".csv"), plan, result.rows)
        if parquet:
            S.write_parquet(prefix.with_name(prefix.name + ".parquet"), plan, result.rows)
    return result
