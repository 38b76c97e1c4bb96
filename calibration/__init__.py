"""Published data with provenance, and the fitting code (installs as ``fodlam.calibration``).

* ``published``: readers of the published tables in ``data/`` (Eyeriss, EIE, chip
  figures, Caffe MAC files), as plain dataclasses in SI units;
* ``fit``: fitting an accelerator profile's coefficients, and the leave-one-out report;
* ``accelerators/``: the bundled accelerator profiles (TOML), each citing its sources.

The names of ``published`` are re-exported here.
"""

from .published import (ACCELERATORS_DIR, CAFFE_KINDS, DATA_DIR, NETS_DIR,  # noqa: F401
                        REFERENCE_NETFILES, ChipFigure, Measurement, NetLayer, bundled_netfiles,
                        chip_figure, chips, eie, eyeriss, load_netfile, measurements,
                        norm_layer_name, reference_net_macs)
