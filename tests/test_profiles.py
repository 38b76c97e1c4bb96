"""Accelerator profiles: every bundled profile loads, cites sources and costs a model."""

import math

import pytest

from fodlam.nest import nests

import fodlam
from fodlam import layers as L
from fodlam.accelerator import bundled, load_accelerator
from fodlam.models import for_accelerator as cost_model_for
from fodlam.errors import FodlamError
from fodlam.models.roofline import Roofline, utilisation

from conftest import run_cli


def test_bundled_profiles_listed():
    names = bundled()
    for expected in ("eyeriss-eie-65nm", "tpu-v1", "nvdla-nv-full", "nvdla-nv-small", "generic-template"):
        assert expected in names
    r = run_cli("profiles")
    assert r.returncode == 0 and "tpu-v1" in r.stdout and "28 nm" in r.stdout


@pytest.mark.parametrize("name", ["eyeriss-eie-65nm", "tpu-v1", "nvdla-nv-full", "nvdla-nv-small",
                                  "generic-template"])
def test_every_profile_costs_every_kind(name):
    acc = load_accelerator(name)
    assert acc.sources, "a profile cites its sources"
    model = cost_model_for(acc)
    for layer in (L.conv(1, 64, 64, 56, 3, padding=1), L.fc(1, 1024, 1000),
                  L.MatMul(batch=12, m=128, k=64, n=128), L.recurrent("lstm", 10, 1, 64, 64),
                  L.elementwise("eltwise", "Relu", 1000), L.counted("conv", 10 ** 6)):
        est = model.estimate(layer)
        assert est.energy_j > 0 and est.latency_s > 0, (name, layer)
        assert math.isfinite(est.energy_j) and math.isfinite(est.latency_s)


def test_systolic_utilisation():
    assert utilisation(256, 256, 256, 256) == 1.0
    assert utilisation(257, 256, 256, 256) == pytest.approx(257 / 512)
    assert utilisation(3 * 49, 64, 256, 256) == pytest.approx(147 / 256 * 64 / 256)
    tpu = Roofline("tpu-v1")
    layer = L.fc(4096, 4096, 4096)
    big = tpu.estimate(layer)
    # SCALE-Sim's systolic rule: 16 x 16 weight tiles, each streaming the 4096 rows after
    # 2 x 256 + 256 - 2 cycles of weight load, fill and drain; the rows (4 KiB of input and
    # one 256-wide column of partial sums each) fit the 24 MiB buffer in one row tile
    (nest,) = nests(layer)
    serial = tpu.array.mapping(nest, scalesim=True)
    assert serial["cycles"] == 256 * (766 + 4096) and serial["row_tiles"] == 1
    # TPU v1 double-buffers its weight tiles: the next shifts in while the rows stream,
    # so a tile costs max(rows, 256) and the layer one shift-in, fill and drain
    assert big.latency_s == pytest.approx((256 * 4096 + 766) / 700e6, rel=1e-9)
    assert big.mapping["double_buffered"] and big.bound == "compute-bound"
    nv = Roofline("nvdla-nv-small")     # 128 KiB shared by 2.4 MiB of weights and 384 KiB of rows
    mp = nv.estimate(L.fc(128, 3072, 768)).mapping
    assert mp["refetch_bytes"] > 0 and "stream" in mp["loop_order"]
    # SCALE-Sim's rule (no shared buffer): 128 rows of 3072 inputs need 4 row tiles
    assert nv.array.mapping(nests(L.fc(128, 3072, 768))[0], scalesim=True)["row_tiles"] == 4
    small = tpu.estimate(L.fc(1, 4096, 4096))   # one vector: bound by reading the weights
    assert small.latency_s == pytest.approx(4096 * 4096 / 34e9, rel=1e-9)


def test_depthwise_underuses_a_wide_array():
    nv = Roofline("nvdla-nv-full")
    dense = nv.estimate(L.conv(1, 64, 64, 56, 3, padding=1))
    dw = nv.estimate(L.conv(1, 64, 64, 56, 3, padding=1, groups=64))
    assert dw.latency_s > dense.latency_s / 64 * 10   # far from the 64x fewer MACs


def test_profile_on_tpu_and_node_flag():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU())
    p = fodlam.profile(model, (1, 3, 32, 32), accelerator="tpu-v1")
    assert p.accelerator["name"] == "tpu-v1" and p.cost_model["name"] == "fodlam-roofline"
    p7 = fodlam.profile(model, (1, 3, 32, 32), accelerator="tpu-v1", node=7)
    assert p7.total_latency_s < p.total_latency_s and p7.accelerator["process_nm"] == 7
    r = run_cli("torch", "examples.zoo:resnet18", "--input-shape", "1,3,64,64", "--accelerator",
                "nvdla-nv-small", "--node", "16", "--scaling", "stillmaker-baas", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert '"technology_scaling": "stillmaker-baas"' in r.stdout


def test_bad_profiles(tmp_path):
    with pytest.raises(FodlamError, match="unknown accelerator"):
        load_accelerator("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ncost_model = "fodlam-roofline"\nprocess_nm = 28\n')
    with pytest.raises(FodlamError, match="architecture"):
        cost_model_for(str(bad))
    bad.write_text("name = \n")
    r = run_cli("run", "examples/configs/alexnet.json", "--accelerator", str(bad))
    assert r.returncode == 2 and "not valid TOML" in r.stderr
    r = run_cli("onnx", "x.onnx", "--node", "0.001")
    assert r.returncode == 2
