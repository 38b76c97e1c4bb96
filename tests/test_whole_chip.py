"""What surrounds the array (issue 21): fused post-processing, weights as the hardware
moves them, double-buffered weight tiles, one buffer for both operands, Winograd, grouped
and depthwise placement, energy beyond the datapath, engines chosen by energy."""

import json
import math

import pytest

import fodlam
from fodlam import layers as L
from fodlam.accelerator import bundled, load_accelerator
from fodlam.models import for_accelerator
from fodlam.nest import nests
from fodlam.sweeps import apply_overrides
from fodlam import technology

torch = pytest.importorskip("torch")
nn = torch.nn


class Block(nn.Module):
    """A ResNet bottleneck-style block: conv-BN-ReLU, conv-BN, a strided 1x1 shortcut with
    BN, the residual add, ReLU and a max-pool."""

    def __init__(self, c=32):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * c)
        self.down = nn.Sequential(nn.Conv2d(c, 2 * c, 1, 2, bias=False), nn.BatchNorm2d(2 * c))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return self.pool(torch.relu(y + self.down(x)))


SHAPE = (1, 32, 28, 28)


def _structure(profile):
    """Per MAC node, in order: its kind and the kinds of the ops its pipeline absorbed (batch
    norms left out: an ONNX export folds them into the convolution's weights)."""
    under = {}
    for n in profile.nodes:
        if n.fused_into:
            under.setdefault(n.fused_into, []).append(n.kind)
    return [(n.kind, sorted(k for k in under.get(n.name, []) if k != "norm"))
            for n in profile.nodes if n.macs]


@pytest.fixture(scope="module")
def block_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("fusion") / "block.onnx"
    torch.onnx.export(Block().eval(), torch.zeros(SHAPE), str(path), dynamo=False)
    return path


@pytest.mark.parametrize("acc", ["nvdla-nv-full", "nvdla-nv-small", "tpu-v1"])
def test_fusion_is_the_same_through_torch_and_onnx(acc, block_onnx):
    pt = fodlam.profile(Block().eval(), SHAPE, accelerator=acc)
    po = fodlam.profile_onnx(block_onnx, accelerator=acc)
    assert _structure(pt) == _structure(po)
    assert any(absorbed for _, absorbed in _structure(pt))
    # the only difference is the torch side's batch norms, absorbed at their arithmetic
    assert pt.total_latency_s == pytest.approx(po.total_latency_s, rel=1e-6)
    assert pt.total_energy_j == pytest.approx(po.total_energy_j, rel=0.01)


def test_fused_ops_cost_no_pass_and_are_reported_under_their_producer():
    net = Block().eval()
    fused = fodlam.profile(net, SHAPE, accelerator="nvdla-nv-full")
    plain = fodlam.profile(net, SHAPE, accelerator="nvdla-nv-full", cost_model="fodlam-roofline")
    # the same profile with the pipeline table removed: every op pays its own pass
    acc = load_accelerator("nvdla-nv-full")
    params = {k: v for k, v in acc.params.items() if k != "pipeline"}
    bare = type(acc)(name="bare", description="", cost_model=acc.cost_model,
                     process_nm=acc.process_nm, params=params)
    separate = fodlam.profile(net, SHAPE, accelerator=bare)
    assert plain.total_energy_j == fused.total_energy_j       # the same model either way
    assert fused.total_latency_s < separate.total_latency_s
    assert fused.total_energy_j < separate.total_energy_j
    data = json.loads(fused.to_json())
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["b1"]["fused_into"] == "c1" and nodes["relu"]["fused_into"] == "c1"
    assert nodes["add"]["fused_into"] == "down.0" and nodes["pool"]["fused_into"] == "down.0"
    assert "fused_into" not in nodes["c1"] and nodes["relu"]["method"] == "fused"
    # each joule counted once: the total is the sum of the nodes
    assert data["total"]["energy_j"] == pytest.approx(sum(n["energy_j"] for n in data["nodes"]))
    # the residual's second map is read from memory: its bytes are charged
    assert nodes["add"]["components"]["dram"] > 0
    # tables show absorbed ops under their producer
    text = str(fused)
    assert "  + relu" in text and text.index("c1") < text.index("  + relu")
    order = [n.name for n, _ in fused.grouped()]
    assert order.index("pool") == order.index("down.0") + 4


def test_a_pipeline_absorbs_only_what_it_has():
    """nv_small has no LUT (SDP_LUT_DISABLE): a sigmoid after a conv keeps its own pass."""
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Sigmoid(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU())
    small = fodlam.profile(net, (1, 8, 16, 16), accelerator="nvdla-nv-small")
    full = fodlam.profile(net, (1, 8, 16, 16), accelerator="nvdla-nv-full")
    small_by, full_by = ({n.op.split(".")[1]: n.fused_into for n in p.nodes} for p in (small, full))
    assert small_by["sigmoid"] is None and full_by["sigmoid"] == "0"
    assert small_by["relu"] == "2"


def test_an_intermediate_read_twice_is_not_fused():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y) + y          # the conv's raw output is needed twice

    p = fodlam.profile(Two(), (1, 8, 16, 16), accelerator="nvdla-nv-full")
    relu = next(n for n in p.nodes if n.op.endswith("relu.default"))
    assert relu.fused_into is None


def test_padded_weight_tiles_can_make_a_larger_array_slower():
    """TPU v1 moves weights as whole 256 x 256 tiles: a 600-wide LSTM on a 512 x 512 array
    moves more padding than on 256 x 256 and is slower (the designers' observation)."""
    base = load_accelerator("tpu-v1")
    big = apply_overrides(base, [("architecture.array_k", 512), ("architecture.array_n", 512)])
    lstm = L.recurrent("lstm", 1, 64, 600, 600)
    small_t = for_accelerator(base).estimate(lstm)
    big_t = for_accelerator(big).estimate(lstm)
    assert big_t.latency_s > 1.1 * small_t.latency_s
    layer = L.fc(64, 600, 600)
    mp = for_accelerator(base).estimate(layer).mapping
    assert mp["weight_bytes_padded"] == 9 * 256 * 256 and mp["weight_bytes_useful"] == 600 * 600


def test_double_buffered_weights_make_a_weight_bound_gemv_scale_with_bandwidth():
    base = load_accelerator("tpu-v1")
    gemv = L.fc(1, 2048, 2048)
    t1 = for_accelerator(base).estimate(gemv).latency_s
    t4 = for_accelerator(apply_overrides(base, [("architecture.dram_bytes_per_s", 4 * 34e9)])).estimate(gemv).latency_s
    assert t1 / t4 > 3.5
    # without double buffering (SCALE-Sim's serial rule) the tile fill caps the speed-up
    serial = for_accelerator(base).array.mapping(nests(gemv)[0], scalesim=True)["cycles"] / 700e6
    assert t1 / max(serial, t4) < 2.0


def test_a_shared_buffer_charges_the_refetch_of_what_does_not_fit():
    """nv_small's 128 KiB CBUF holds weights and data: a layer with 576 KiB of weights and
    200 KiB of input re-reads one of them; a 2 MiB buffer holds both and re-reads nothing."""
    layer = L.conv(1, 256, 256, 28, 3, padding=1)
    small = for_accelerator("nvdla-nv-small").estimate(layer).mapping
    big_acc = apply_overrides(load_accelerator("nvdla-nv-small"), [("architecture.onchip_bytes", 2 ** 21)])
    big = for_accelerator(big_acc).estimate(layer).mapping
    weights, data, out = 256 * 256 * 9, 256 * 28 * 28, 256 * 28 * 28
    assert small["refetch_bytes"] > 0 and big["refetch_bytes"] == 0
    assert big["dram_bytes"] == weights + data + out
    assert small["dram_bytes"] == pytest.approx(weights + data + out + small["refetch_bytes"])
    assert "both resident" in big["loop_order"] and "stream" in small["loop_order"]


def _int8(layer):
    return L.Conv(**{**{f: getattr(layer, f) for f in layer.__dataclass_fields__}, "bits": 8})


def test_winograd_on_nv_full_only_for_3x3_stride_1():
    full = for_accelerator("nvdla-nv-full")
    layer = _int8(L.conv(1, 64, 64, 56, 3, padding=1))
    est = full.estimate(layer)
    mp = est.mapping
    assert mp["winograd"] and mp["engine_macs"] == pytest.approx(layer.macs / 2.25)
    assert mp["transform_ops"] > 0 and "Winograd" in est.how
    direct = full.array.mapping(nests(layer)[0], scalesim=True)
    assert mp["cycles"] < direct["cycles"] / 2
    assert not full.estimate(_int8(L.conv(1, 64, 64, 56, 3, stride=2, padding=1))).mapping["winograd"]
    assert not full.estimate(_int8(L.conv(1, 64, 64, 56, 5, padding=2))).mapping["winograd"]
    assert not for_accelerator("nvdla-nv-small").estimate(layer).mapping["winograd"]
    # the profile reports the network's MACs; the engine's work is beside them
    p = fodlam.profile(nn.Conv2d(64, 64, 3, padding=1, bias=False), (1, 64, 56, 56),
                       accelerator="nvdla-nv-full")
    assert p.total_macs == layer.macs


@pytest.mark.parametrize("acc", ["nvdla-nv-full", "nvdla-nv-small"])
def test_depthwise_groups_are_placed_side_by_side(acc):
    """A depthwise 3x3 layer costs a small multiple of its MACs at full utilisation on
    NVDLA (never hundreds), and the mapping says how the groups were placed."""
    model = for_accelerator(acc)
    arch = model.accelerator.architecture
    for c, h in ((32, 112), (144, 56), (256, 28)):
        layer = _int8(L.conv(1, c, c, h, 3, padding=1, groups=c))
        est = model.estimate(layer)
        full = layer.macs / (arch.array_k * arch.array_n * arch.clock_mhz * 1e6)
        assert est.latency_s < 80 * full, (c, h, est.latency_s / full)
        assert "group" in est.mapping["group_placement"]
    one_per_tile = model.array.mapping(nests(layer)[0], scalesim=True)["cycles"]
    if est.mapping["groups_per_tile"] > 1:      # 9 taps fit the array's reduction side
        assert est.mapping["cycles"] < one_per_tile / 4
    else:                                       # nv_small: 8 rows, a 9-tap filter takes two
        assert acc == "nvdla-nv-small" and est.mapping["group_placement"] == "one group per weight tile"


def _mac_floor_j(bits: int, node: float, rule: str) -> float:
    """The energy of one multiply-add at a width, moved to a node: M. Horowitz, ISSCC 2014,
    Fig. 1.1.9 (45 nm): 8-bit integer multiply 0.2 pJ + add 0.03 pJ; wider operands cost at
    least proportionally more (a multiplier grows faster than its width)."""
    t, p = technology.scale(rule, 45.0, node)
    return 0.23e-12 * (bits / 8) * t * p


@pytest.mark.parametrize("acc", bundled())
@pytest.mark.parametrize("node,rule", [(None, None), (16, "dennard"), (7, "stillmaker-baas"),
                                       (130, "dennard")])
def test_energy_floor_of_a_compute_bound_gemm(acc, node, rule):
    """A compute-bound GEMM never costs less energy per MAC than a MAC at the profile's
    node and precision."""
    a = load_accelerator(acc)
    if node is not None:
        a = a.at_node(node, rule)
    model = for_accelerator(a)
    for bits in (8, 16):
        layer = L.FullyConnected(batch=4096, in_features=1024, out_features=1024, bits=bits)
        est = model.estimate(layer)
        from fodlam.engines import precision
        arch = a.architecture
        width = precision(arch, bits) if arch is not None else bits
        floor = _mac_floor_j(width, a.process_nm, a.technology_scaling)
        assert est.energy_j / layer.macs >= floor, (acc, node, bits)


def test_nvdla_counts_energy_beyond_the_datapath():
    """Clock tree, control and pipeline registers per PE-cycle of work, derived from the
    Xavier DLA's published peak efficiency: at full utilisation the whole engine costs
    that figure (0.253 pJ per MAC at 16 nm) plus its memories."""
    acc = load_accelerator("nvdla-nv-full").at_node(16, "stillmaker-baas")
    layer = L.FullyConnected(batch=4096, in_features=1024, out_features=1024, bits=8)
    est = for_accelerator(acc).estimate(layer)
    parts = est.components
    assert parts["clock_control"] > parts["compute"] > 0
    per_mac = (parts["clock_control"] + parts["compute"]) / layer.macs
    assert per_mac == pytest.approx(0.253e-12, rel=0.05)


def test_tpu_energy_lies_between_idle_and_busy_power_and_shows_the_bytes():
    model = for_accelerator("tpu-v1")
    net = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                        nn.Flatten(), nn.Linear(64 * 112 * 112, 1000))
    p = fodlam.profile(net, (1, 3, 224, 224), accelerator="tpu-v1")
    chains = {}          # a MAC node and the ops its activation unit absorbed run as one
    for n in p.nodes:
        key = n.fused_into or n.name
        e, t = chains.get(key, (0.0, 0.0))
        chains[key] = (e + n.energy_j, t + n.latency_s)
    for name, (e, t) in chains.items():
        if e:
            assert 28 * t * (1 - 1e-9) <= e <= 40 * t * (1 + 1e-9), name
    fc = next(n for n in p.nodes if n.kind == "fc")
    assert fc.components["dram"] > max(0.05 * fc.energy_j, fc.components["dynamic"])  # weight-bound
    assert model.describe()["name"] == "fodlam-roofline"


def test_engines_chosen_by_energy_and_eie_keeps_its_fc_layers():
    model = for_accelerator("eyeriss-eie-65nm")
    # EIE's published fc layers at their published weight densities (eie-isca2016 Table III:
    # AlexNet fc6 and fc7 9%, fc8 25%): their non-zeros fit EIE's 8 MiB weight SRAM
    for k, n, d in ((9216, 4096, 0.09), (4096, 4096, 0.09), (4096, 1000, 0.25)):
        est = model.estimate(L.fc(1, k, n, weight_density=d))
        assert est.engine.startswith("sparse")
        assert "least energy" in est.engine_reason and "row-stationary" in est.engine_reason
    # dense, fc6's 37.7 M weights do not fit: on the sparse engine they would stream from
    # DRAM on every pass (on-chip capacity is a hard bound)
    sparse = model.engines["sparse"].cost(nests(L.fc(1, 9216, 4096))[0])
    assert sparse.mapping["weights_onchip"] is False and sparse.bound == "DRAM-bound"
    assert sparse.latency_s >= 9216 * 4096 / load_accelerator("eyeriss-eie-65nm").architecture.dram_bytes_per_s
    dense = model.estimate(L.fc(3136, 64, 256))       # a dense 3,136-row GEMM
    assert dense.engine.startswith("array")
    figures = dense.engine_reason
    assert figures.count(" J / ") == 2


def test_the_whole_chip_table_in_the_docs_is_true():
    """docs/accuracy.md shows validation/whole_chip.py's table as it computes now."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("whole_chip", root / "validation" / "whole_chip.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check", str(root / "docs" / "accuracy.md")]) == 0
    # and the figures it compares with carry their provenance
    rows = mod.published()
    assert len(rows) == 7 and all(r["throughput"] > 0 and r["average_power"] > 0 for r in rows)
