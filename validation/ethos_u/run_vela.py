"""Run Arm's Vela (the Ethos-U compiler and its performance estimator) on the int8 TFLite
twins of ``networks.py`` and write what it estimates, per operation, to
``calibration/data/vela_ethos_u.csv`` (with its provenance on every row).

    python -m venv /tmp/vela && /tmp/vela/bin/pip install ethos-u-vela==5.2.0
    /tmp/vela/bin/python validation/ethos_u/run_vela.py

Each accelerator is compiled with Vela's own default system configuration and memory mode
(what ``vela --accelerator-config X model.tflite`` does): Ethos-U55 "High End Embedded"
(500 MHz; feature maps in SRAM, weights in off-chip flash: "Shared_Sram"), Ethos-U65
"Client Server" (1 GHz; everything in DRAM with a 384 KB SRAM cache:
"Dedicated_Sram_384KB"). These figures are a reference to validate against, never an
input of FODLAM: the Ethos-U profiles are written from Arm's published hardware figures.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE.parent.parent / "calibration" / "data" / "vela_ethos_u.csv"
ACCELERATORS = ["ethos-u55-128", "ethos-u55-256", "ethos-u65-512"]
COLUMNS = ["network", "accelerator", "system_config", "memory_mode", "core_clock_hz", "index",
           "original_operator", "nng_operator", "name", "op_cycles", "macs", "npu_cycles",
           "sram_cycles", "dram_cycles", "offflash_cycles", "network_cycles", "source", "unit"]


def vela_version() -> str:
    from ethosu.vela._version import __version__
    return __version__


def run(network: str, accel: str, work: Path) -> list[dict]:
    from tflite_build import tflite_bytes

    model = work / f"{network}.tflite"
    model.write_bytes(tflite_bytes(network))
    out = work / f"{network}-{accel}"
    subprocess.run([str(Path(sys.executable).with_name("vela")), str(model), "--accelerator-config",
                    accel, "--output-dir", str(out), "--verbose-performance"], check=True, capture_output=True, text=True)
    summary = next(out.glob("*_summary_*.csv"))
    srow = next(csv.DictReader(open(summary)))
    rows = []
    source = (f"Arm Vela {vela_version()} performance estimate (vela --accelerator-config {accel}, "
              f"default system config {srow['system_config']}, memory mode {srow['memory_mode']}) "
              "of the int8 TFLite twin built by validation/ethos_u/tflite_build.py")
    for i, r in enumerate(csv.DictReader(open(out / f"{network}_per-layer.csv"))):
        rows.append({"network": network, "accelerator": accel,
                     "system_config": srow["system_config"], "memory_mode": srow["memory_mode"],
                     "core_clock_hz": srow["core_clock"], "index": i,
                     "original_operator": r["Original Operator"], "nng_operator": r["NNG Operator"],
                     "name": r["Name"], "op_cycles": r["Op Cycles"], "macs": r["MAC Count"],
                     "npu_cycles": r["NPU"], "sram_cycles": r["SRAM AC"], "dram_cycles": r["DRAM AC"],
                     "offflash_cycles": r["OffFlash AC"], "network_cycles": srow["cycles_total"],
                     "source": source, "unit": "cycles at core_clock_hz (macs: count)"})
    return rows


def main() -> int:
    from networks import NETWORKS

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in NETWORKS:
            for accel in ACCELERATORS:
                rows += run(net, accel, Path(tmp))
                print(f"{net} on {accel}: {rows[-1]['network_cycles']} cycles", file=sys.stderr)
    with open(OUT, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {OUT} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
