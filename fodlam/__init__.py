"""FODLAM: First-Order Deep Learning Accelerator Model.

Public API (importing it never imports torch or onnx)::

    import fodlam
    prof = fodlam.profile(torch_model, (1, 3, 224, 224))   # PyTorch importer
    prof = fodlam.profile_onnx("model.onnx")              # ONNX importer
    prof = fodlam.run_config("configs/alexnet.json")       # 2017-style configuration
    res = fodlam.sweep("SWEEP.toml", jobs=2)               # design-space sweep: res.rows
    gen = fodlam.generate_profile(llm, prompt_len=512, new_tokens=128)   # J and s per token
    prof.total_energy_j, prof.total_latency_s, prof.top(5)   # prof: one line; print(prof): the table
    prof.summary(depth=2); prof.to_pandas(); prof.save_html("report.html")
    cmp = fodlam.profile(torch_model, (1, 3, 224, 224), accelerator=["tpu-v1", "ethos-u55-128"])
"""

from __future__ import annotations

from pathlib import Path as _Path

from ._version import __version__
from .accelerator import Accelerator, load_accelerator
from .errors import FodlamError
from .costed import Profile

# In a source checkout that is run without installing, importers/ and calibration/ sit
# beside this folder and install as fodlam.importers / fodlam.calibration: let the package
# find them there. An installed package has them inside and this does nothing.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "setup.cfg").is_file() and (_checkout / "importers" / "__init__.py").is_file() \
        and not (_Path(__file__).resolve().parent / "importers").exists():
    __path__.append(str(_checkout))  # type: ignore[name-defined]  # noqa: F821

from .api import generate_profile, profile, profile_onnx, run_config, sweep  # noqa: E402

__all__ = ["__version__", "Accelerator", "FodlamError", "Profile", "generate_profile",
           "load_accelerator", "profile", "profile_onnx", "run_config", "sweep"]
