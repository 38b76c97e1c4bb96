"""Accelerators no bundled profile was built for: Arm's Ethos-U55 (128 and 256 MACs) and
Ethos-U65 (512 MACs), written from Arm's published figures, against Arm's own estimator
(Vela 5.2; its estimates are stored with provenance in calibration/data/vela_ethos_u.csv,
written by validation/ethos_u/run_vela.py). Keeps docs/accuracy.md's tables true."""

import statistics
import sys

import pytest

from conftest import ROOT

pytest.importorskip("torch")
sys.path.insert(0, str(ROOT / "validation" / "ethos_u"))


@pytest.fixture(scope="module")
def rows():
    import compare

    return compare.compare()


def test_macs_agree_exactly_with_the_tflite_twins(rows):
    import compare

    ref = compare.vela_reference()
    for r in rows:
        v = ref[(r["network"], r["accelerator"])]
        f = compare.fodlam_figures(r["network"], r["accelerator"])
        for kind in ("conv", "depthwise", "fc", "product"):
            assert v["macs"].get(kind, 0) == f["macs"].get(kind, 0), (r["network"], kind)


def test_whole_networks_against_vela(rows):
    ratios = [r["ratio"] for r in rows]
    assert len(rows) == 21
    assert statistics.median(abs(x - 1) for x in ratios) <= 0.15
    assert sum(max(x, 1 / x) <= 1.5 for x in ratios) >= 20
    assert all(max(x, 1 / x) <= 1.7 for x in ratios)


def test_layer_kinds_against_vela(rows):
    """Each layer kind's total per NPU within 1.5x, but the Ethos-U65's products of two
    activations (docs/accuracy.md says why)."""
    import compare

    for kind in compare.KINDS:
        for acc in ("ethos-u55-128", "ethos-u55-256", "ethos-u65-512"):
            v = sum(r[f"vela_{kind}_s"] for r in rows if r["accelerator"] == acc)
            f = sum(r[f"fodlam_{kind}_s"] for r in rows if r["accelerator"] == acc)
            if not v:
                continue
            bound = 2.0 if (kind, acc) == ("product", "ethos-u65-512") else 1.55
            assert 1 / bound <= f / v <= bound, (kind, acc, f / v)


def test_the_ethos_u_tables_in_the_docs_are_true():
    import compare

    assert compare.main(["--check", str(ROOT / "docs" / "accuracy.md")]) == 0
