"""The 2017 model: parity with the 2017 tool, and per-inference numbers by hand."""

import json

import pytest

import fodlam
from fodlam import calibration as cal
from fodlam.models.fodlam2017 import Fodlam2017

from conftest import EXAMPLES

# The 2017 tool's own output (shared/reference/fodlam-2017-algorithm.md).
EXPECTED = {
    "alexnet.json": (0.0321787720877915, 0.11537568888888888),
    "vgg16.json": (1.0163500718038407, 4.309474388888889),
    "vgg16-scale.json": (1.0048800185348745, 4.240825922509656),
}

S = 65 / 45
EIE_POWER = 0.59 * S * S
# Published values typed here independently of calibration/data (Eyeriss Tables V, VI;
# EIE Table IV): (total latency ms, power mW).
EYERISS_ALEXNET = {"CONV1": (20.9, 332), "CONV2": (41.9, 288), "CONV3": (23.6, 266),
                   "CONV4": (18.4, 235), "CONV5": (10.5, 236)}
EIE_ALEXNET_US = {"FC6": 30.3, "FC7": 12.2, "FC8": 9.9}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compat_reproduces_2017(name):
    from fodlam.config2017 import compat_output

    prof = fodlam.run_config(EXAMPLES / "configs" / name, compat=True)
    out = compat_output(prof)
    energy, latency = EXPECTED[name]
    assert out["total"]["energy"] == pytest.approx(energy, rel=1e-12)
    assert out["total"]["latency"] == pytest.approx(latency, rel=1e-12)


def test_compat_vgg16_per_kind():
    from fodlam.config2017 import compat_output

    out = compat_output(fodlam.run_config(EXAMPLES / "configs" / "vgg16.json", compat=True))
    assert out["conv"]["energy"] == pytest.approx(1.0162585, rel=1e-12)
    assert out["conv"]["latency"] == pytest.approx(4.3094, rel=1e-12)
    assert out["fc"]["energy"] == pytest.approx(9.157180384087789e-05, rel=1e-12)
    assert out["fc"]["latency"] == pytest.approx(7.438888888888888e-05, rel=1e-12)


def test_default_mode_is_per_inference_by_hand():
    prof = fodlam.run_config(EXAMPLES / "configs" / "alexnet.json")
    by_name = {n.name: n for n in prof.nodes}
    for layer, (ms, mw) in EYERISS_ALEXNET.items():
        node = by_name[layer]
        assert node.latency_s == pytest.approx(ms * 1e-3 / 4, rel=1e-12)
        assert node.energy_j == pytest.approx(ms * 1e-3 * mw * 1e-3 / 4, rel=1e-12)
        assert node.method == "lookup"
    for layer, us in EIE_ALEXNET_US.items():
        node = by_name[layer]
        assert node.latency_s == pytest.approx(us * 1e-6 * S, rel=1e-12)
        assert node.energy_j == pytest.approx(us * 1e-6 * S * EIE_POWER, rel=1e-12)
    total_e = sum(ms * mw * 1e-6 / 4 for ms, mw in EYERISS_ALEXNET.values()) + \
        sum(us * 1e-6 * S * EIE_POWER for us in EIE_ALEXNET_US.values())
    assert prof.total_energy_j == pytest.approx(total_e, rel=1e-12)
    assert "per-inference" == prof.cost_model["mode"]
    assert "divided by the batch" in prof.cost_model["normalisation"]


def test_default_scaling_rate_by_hand():
    model = Fodlam2017()
    # conv: sum of per-image energy over the 18 layers / sum of per-image MACs
    energy = sum(m.latency_s * m.power_w / m.batch for m in cal.eyeriss())
    macs = sum(m.layer.macs for m in cal.eyeriss())
    assert model.rates["conv"].energy_j_per_mac == pytest.approx(energy / macs, rel=1e-12)
    assert model.rates["conv"].layers == 18 and model.rates["fc"].layers == 6
    # a scaled layer: MACs x rate
    prof = fodlam.run_config(EXAMPLES / "configs" / "vgg16-scale.json")
    conv11 = next(n for n in prof.nodes if n.name == "CONV1-1")
    assert conv11.energy_j == pytest.approx(86_704_128 * energy / macs, rel=1e-12)
    assert conv11.method == "scale"


def test_shape_macs_match_caffe_and_published():
    caffe = cal.reference_net_macs()
    for m in cal.measurements():
        assert m.layer.macs == caffe[m.network, m.name].macs, m.name
    for m in cal.eyeriss():
        # the published G-MAC column is for the whole batch (rounded to 2-3 digits)
        assert m.layer.macs * m.batch / 1e9 == pytest.approx(m.extra["macs_g_per_batch"], rel=0.02)


def test_every_value_has_provenance():
    for m in cal.measurements():
        assert m.source in ("eyeriss-jssc2017", "eie-isca2016")
        assert m.table.startswith("Table") and m.row
    assert len(cal.eyeriss()) == 18 and len(cal.eie()) == 6


def _netfile_layers(filename):
    return [layer for layer in cal.load_netfile(cal.NETS_DIR / filename) if layer.macs is not None]


def _reference_2017(layer_macs):
    """An independent rendering of the 2017 scale rule from the published tables."""
    lat, en = {}, {}
    for m in cal.eyeriss():
        lat[m.network, m.name] = m.latency_s
        en[m.network, m.name] = m.latency_s * m.power_w
    for m in cal.eie():
        lat[m.network, m.name] = m.latency_s * S
        en[m.network, m.name] = m.latency_s * S * EIE_POWER
    caffe = cal.reference_net_macs()
    rates = {}
    for kind in ("conv", "fc"):
        keys = [k for k in caffe if k[1].startswith(kind.upper())]
        m = sum(caffe[k].macs for k in keys)
        rates[kind] = (sum(en[k] for k in keys) / m, sum(lat[k] for k in keys) / m)
    kinds = {"Convolution": "conv", "Deconvolution": "conv", "InnerProduct": "fc"}
    e = sum(macs * rates[kinds[t]][0] for t, macs in layer_macs)
    t = sum(macs * rates[kinds[t]][1] for t, macs in layer_macs)
    return e, t


@pytest.mark.parametrize("netfile", cal.bundled_netfiles())
def test_compat_scale_configs_from_every_bundled_netfile(netfile, tmp_path):
    from fodlam.config2017 import compat_output

    layers = _netfile_layers(netfile)
    # every MAC-bearing layer, and a subset (every other one)
    for subset in (layers, layers[::2]):
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"netfile": netfile, "layers": [x.name for x in subset]}))
        out = compat_output(fodlam.run_config(cfg, compat=True))
        e, t = _reference_2017([(x.type, x.macs) for x in subset])
        assert out["total"]["energy"] == pytest.approx(e, rel=1e-9)
        assert out["total"]["latency"] == pytest.approx(t, rel=1e-9)


def test_netfile_resolves_next_to_config_first(tmp_path):
    mine = [{"name": "conv1", "type": "Convolution", "macs": 1000},
            {"name": "fc1", "type": "InnerProduct", "macs": 10}]
    (tmp_path / "alexnet_deploy.json").write_text(json.dumps(mine))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"netfile": "alexnet_deploy.json", "layers": ["conv1", "FC1"]}))
    prof = fodlam.run_config(cfg)
    assert prof.total_macs == 1010


def test_unmodeled_kinds_follow_stated_rules():
    from fodlam import layers as L

    model = Fodlam2017()
    conv_rate = model.rates["conv"]
    mm = model.estimate(L.MatMul(batch=1, m=10, k=10, n=10))
    assert mm.energy_j == pytest.approx(1000 * conv_rate.energy_j_per_mac)
    assert mm.method == "rule"
    relu = model.estimate(L.elementwise("eltwise", "Relu", 500))
    assert relu.energy_j == pytest.approx(500 * conv_rate.energy_j_per_mac)
    view = model.estimate(L.elementwise("data", "Reshape", 500, ops_per_elem=0))
    assert view.energy_j == 0 and view.method == "none"
