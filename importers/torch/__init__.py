"""PyTorch front end: trace a module with fake tensors, lower every aten op to canonical
layers, return the nodes as data (an ``Imported``); no cost.

How it traces without running the model's arithmetic or materialising its weights: every
parameter and buffer is replaced (``torch.func.functional_call``) by a *fake* tensor of
the same shape, dtype and strides (FakeTensorMode: no storage), so a model built on the
``meta`` device profiles like a real one; the forward runs under a dispatch mode that
records each aten op with its shapes and the module path that issued it.

The pipeline, one file per step:

* ``inputs``: input shapes and dtypes, fake tensors for parameters, buffers and inputs,
  real inputs however nested, fake copies of objects holding real tensors (a KV cache),
  and weight densities;
* ``tracer``: ``Tracer``, the dispatch mode that records each aten call with its module
  and dataflow, recurrent modules recorded whole, and ``lower_records`` (records ->
  ``Node``s);
* ``lowerings``: the table ``ATEN`` mapping an aten op to a small function per op family;
  an op absent from it and from ``fodlam.ops`` becomes an *unmodeled* node;
* ``moe``: mixture-of-experts modules lowered whole at a stated routing;
* ``trace``: ``trace``, the driver (fake, meta or one real pass) that runs the forward
  under the tracer and lowers its records;
* ``generation``: ``trace_generation``, an LLM's prefill and sampled decode steps traced
  in one fake mode (``import_steps``), returned as a ``GenerationTrace``;
* this file: the entry points ``import_module``, ``import_factory``, ``load_factory`` and
  ``build_factory``.

The arithmetic lives in ``fodlam.layers`` and ``fodlam.ops``; these files only read
shapes from aten calls.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

try:  # imported lazily by fodlam.api; never at fodlam import time
    import torch  # noqa: F401
    from torch import nn
except ImportError as e:  # pragma: no cover
    raise ImportError("the PyTorch importer needs torch: pip install 'fodlam[torch]'") from e

from fodlam.errors import FodlamError, InputError, UserCodeError, guard_user_code
from fodlam.nodes import Imported

from .generation import import_steps, trace_generation
from .inputs import weight_densities
from .lowerings import ATEN, MAC_ATEN, SILENT, Call, aten
from .moe import MOE_ROUTING
from .trace import trace
from .tracer import Tracer, lower_records

__all__ = ["ATEN", "MAC_ATEN", "SILENT", "Call", "aten", "Tracer", "lower_records", "trace",
           "weight_densities", "MOE_ROUTING", "import_module", "import_steps", "load_factory",
           "build_factory", "import_factory", "trace_generation"]


def import_module(model, input_shape=None, *, batch=None, dtype=None, inputs=None,
                  moe_routing="balanced", weight_density=None, **forward_kwargs) -> Imported:
    """The lowered nodes of a PyTorch module (see ``trace``), as data: no cost."""
    nodes, info, resolved_batch = trace(model, input_shape, batch=batch, dtype=dtype,
                                        inputs=inputs, moe_routing=moe_routing,
                                        weight_density=weight_density, **forward_kwargs)
    return Imported(nodes=nodes, network=info, batch=resolved_batch)


def load_factory(spec: str):
    """``package.module:factory`` or ``path/to/file.py:factory`` -> the callable.

    Importing user code runs it: only point this at code you trust (as with any import).
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"'{spec}': expected PACKAGE.MODULE:FACTORY or path/to/file.py:FACTORY")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise InputError(f"'{module_name}' not found")
            # a private module name per file: two model files of the same name (models.py in
            # two folders) never shadow each other or a real module called that
            import hashlib
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            name = f"_fodlam_user_{path.stem}_{digest}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module     # dataclasses in the file look themselves up here
            guard_user_code(f"importing '{module_name}'", mod_spec.loader.exec_module, module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = guard_user_code(f"importing '{module_name}'", importlib.import_module, module_name)
    except FodlamError:
        raise
    except ImportError as e:
        raise InputError(f"cannot import '{module_name}': {e}") from None
    except Exception as e:  # noqa: BLE001 - user code failed at import
        raise UserCodeError(f"importing '{module_name}' failed: {type(e).__name__}: {e}; the "
                            "model is marked failed (fix the model code)") from None
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise InputError(f"'{module_name}' has no attribute '{attr}'") from None
    return factory


def build_factory(spec: str):
    """The module a ``MODULE:FACTORY`` (or ``FILE.py:FACTORY``) reference builds."""
    factory = load_factory(spec)
    try:
        model = guard_user_code(f"{spec}()", factory) if not isinstance(factory, nn.Module) else factory
    except FodlamError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserCodeError(f"calling {spec}() failed: {type(e).__name__}: {e}; the model is "
                            "marked failed (fix the model code)") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def import_factory(spec: str, shapes, *, batch=None, dtype=None) -> Imported:
    """The lowered nodes of the module ``spec`` builds, at ``shapes`` (one per input)."""
    model = build_factory(spec)
    if not shapes:
        raise InputError("give at least one --input-shape, e.g. --input-shape 1,3,224,224")
    shapes = [tuple(s) for s in shapes]
    imported = import_module(model, shapes if len(shapes) > 1 else shapes[0], batch=batch,
                             dtype=dtype)
    imported.network["name"] = spec
    imported.network["source"] = spec
    return imported
