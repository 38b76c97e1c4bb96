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
    model = cost_model_for(accelerator, compat=compat)
    warnings = [f"layer {d} listed more than once: costed once (as the 2017 tool did)"
                for d in cfg.duplicates]
    info = {"name": cfg.name, "format": "fodlam-2017-config", "source": cfg.source}
    if cfg.net:
        info["net"] = cfg.net
    else:
        info["netfile"] = cfg.netfile.name
    return build_profile(config_nodes(cfg), model, model=info, batch=1, warnings=warnings)


def profile(model, input_shape=None, *, accelerator=None, batch=None, dtype=None, inputs=None,
            strict: bool = False, **forward_kwargs):
    """Profile a PyTorch module without running its arithmetic. See fodlam.importers.torch."""
    from fodlam.importers.torch import profile_module

    return profile_module(model, input_shape, accelerator=accelerator, batch=batch, dtype=dtype,
                          inputs=inputs, strict=strict, **forward_kwargs)


def profile_onnx(path, *, accelerator=None, input_shapes=None, dims=None, batch=None,
                 strict: bool = False):
    """Profile an ONNX file. See fodlam.importers.onnx."""
    from fodlam.importers.onnx import profile_file

    return profile_file(path, accelerator=accelerator, input_shapes=input_shapes, dims=dims,
                        batch=batch, strict=strict)
