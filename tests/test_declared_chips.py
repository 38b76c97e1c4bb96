"""The chip you bring (issue 27): a profile that says how its array unrolls the loops, a
rate per op class, fixed costs, memory ports, weights fetched ahead, cores. Each test
builds a small chip from the documented fields and checks a mechanism against a hand
count; each would fail without the mechanism."""

import math

import pytest

import fodlam
from fodlam import layers as L
from fodlam.errors import ConfigError
from fodlam.models import for_accelerator
from fodlam.nest import nests

CLOCK = 100e6      # 100 MHz: one cycle is 10 ns

BASE = """
name = "test-chip"
description = "a chip written from the documented fields"
cost_model = "fodlam-roofline"
process_nm = 16

[architecture]
clock_mhz = 100
bytes_per_element = 1
precisions = [8]
activations = "resident"

[energy]
mac_j = 1e-13
sram_j_per_byte = 1e-12
dram_j_per_byte = 2e-11
"""

ARRAY = """
[array]
{array}

[[array.unroll]]
name = "dense"
applies = ["conv", "gemm"]
dims = {{ c = 8, m = 8, h = 2 }}
cycles = 1
{extra}
[[array.unroll]]
name = "any"
applies = ["conv", "gemm", "depthwise", "product"]
dims = {{ m = 8 }}
cycles = 1
"""

PORTS = """
[[ports]]
name = "sram"
holds = ["maps"]
bytes_per_s = 1e12
{sram}

[[ports]]
name = "flash"
holds = ["weights"]
bytes_per_s = {flash_bw}
j_per_byte = 5e-11
"""


def chip(tmp_path, array="", extra="", ports=True, sram="", flash_bw=1e12, tail="", name="c"):
    text = BASE + ARRAY.format(array=array, extra=extra)
    if ports:
        text += PORTS.format(sram=sram, flash_bw=flash_bw)
    else:
        text = text.replace('activations = "resident"', 'activations = "resident"\ndram_bytes_per_s = 1e12')
    path = tmp_path / f"{name}.toml"
    path.write_text(text + tail)
    return for_accelerator(str(path))


def cycles(model, layer) -> float:
    return model.estimate(layer).latency_s * CLOCK


def test_depthwise_packed_by_its_unrolling(tmp_path):
    """Nine taps do not fit a channel-reduction unrolling: a depthwise path that spreads
    channels and positions across the MACs (Ethos-U's) runs it at its own rate."""
    dw = L.conv(1, 64, 64, (16, 16), 3, 1, 1, groups=64)
    plain = chip(tmp_path, name="plain")
    packed = chip(tmp_path, name="packed", extra='''
[[array.unroll]]
name = "depthwise"
applies = ["depthwise"]
dims = { g = 8, h = 2, w = 1, t = 4 }
cycles = 4
''')
    e = packed.estimate(dw)
    assert e.mapping["unrolling"] == "depthwise" and e.mapping["layer_class"] == "depthwise"
    # 64/8 channel groups x 16/2 rows x 16 columns x ceil(9/4) tap steps x 4 cycles
    assert e.mapping["mac_cycles"] == 8 * 8 * 16 * 3 * 4
    # on the fallback m-only unrolling every channel is its own group: 64 x 256 x 9 steps
    assert plain.estimate(dw).mapping["mac_cycles"] == 64 * 256 * 9
    assert cycles(packed, dw) < cycles(plain, dw) / 5


def test_one_channel_first_layer_wastes_the_channel_lanes(tmp_path):
    """A one-channel input on an array that reduces 8 input channels per cycle uses 1/8 of
    it; a part-kernel unrolling (4 taps x 2 channels) recovers part of it."""
    model = chip(tmp_path)
    first = L.conv(1, 1, 8, (32, 32), 3, 1, 1)
    deep = L.conv(1, 8, 8, (32, 32), 3, 1, 1)
    m1, m8 = model.estimate(first).mapping, model.estimate(deep).mapping
    assert m1["mac_cycles"] == m8["mac_cycles"]            # the same steps, 1/8 of the work
    assert first.macs * 8 == deep.macs
    assert m1["utilisation"] == pytest.approx(m8["utilisation"] / 8, rel=0.01)
    pk = chip(tmp_path, name="pk", extra='''
[[array.unroll]]
name = "part-kernel"
applies = ["conv"]
dims = { t = 4, c = 2, m = 8, h = 2 }
cycles = 1
''')
    e = pk.estimate(first).mapping
    assert e["unrolling"] == "part-kernel"
    assert e["mac_cycles"] == math.ceil(9 / 4) * 1 * 1 * 16 * 32   # taps/4 x c x m/8 x rows/2 x cols
    assert e["mac_cycles"] < m1["mac_cycles"]


def test_thin_layer_on_a_wide_array_fills_it_with_positions(tmp_path):
    """16 output channels on a 64-wide output axis: the hardware fills the rest with output
    positions (an alternative unrolling), not idle columns."""
    wide = """
[array]

[[array.unroll]]
name = "wide"
applies = ["conv", "gemm", "depthwise", "product"]
dims = { m = 64, c = 8 }

[[array.unroll]]
name = "thin"
applies = ["conv", "gemm"]
dims = { m = 16, p = 4, c = 8 }
"""
    path = tmp_path / "wide.toml"
    path.write_text(BASE.replace('activations = "resident"',
                                 'activations = "resident"\ndram_bytes_per_s = 1e12') + wide)
    model = for_accelerator(str(path))
    thin = L.conv(1, 64, 16, (8, 8), 1)
    e = model.estimate(thin).mapping
    assert e["unrolling"] == "thin" and e["utilisation"] == pytest.approx(1.0)
    assert e["mac_cycles"] == 64 / 4 * 64 / 8           # positions/4 x channels/8
    fat = L.conv(1, 64, 64, (8, 8), 1)
    assert model.estimate(fat).mapping["mac_cycles"] == 64 * 64 / 8


def test_fixed_cost_per_operation_dominates_a_tiny_layer(tmp_path):
    model = chip(tmp_path, array="op_cycles = 500")
    add = L.Elementwise("eltwise", "add", 20, 10, 10)
    tiny = L.fc(1, 8, 8)
    assert 500 <= cycles(model, add) < 520
    assert 500 <= cycles(model, tiny) < 520
    free = chip(tmp_path, name="free")
    assert cycles(free, tiny) < 20


def test_two_port_layer_bound_by_its_weight_port(tmp_path):
    """Weights in flash at 1 MB/s, maps in a fast SRAM: a GEMV takes its weight bytes over
    the flash bandwidth, and says so."""
    model = chip(tmp_path, flash_bw=1e6)
    gemv = L.fc(1, 256, 256)
    e = model.estimate(gemv)
    assert e.bound == "flash-bound"
    assert e.latency_s == pytest.approx(256 * 256 / 1e6, rel=1e-6)
    assert e.mapping["port_bytes"]["flash"] == 256 * 256
    assert e.components["port_flash"] == pytest.approx(256 * 256 * 5e-11)


def test_requests_in_flight_limit_a_port(tmp_path):
    """With a request latency and a limit on requests in flight, a port reaches only
    max_requests x burst / latency (Little's law)."""
    sram = "latency_cycles = 100\nburst_bytes = 32\nmax_requests = 4"
    model = chip(tmp_path, sram=sram)
    port = model.array.port["maps"]
    assert port.effective_bytes_per_s(CLOCK) == pytest.approx(4 * 32 * CLOCK / 100)
    big = L.Elementwise("eltwise", "add", 2_000_000, 1_000_000, 1_000_000)
    assert model.estimate(big).latency_s >= 3e6 / (4 * 32 * CLOCK / 100)


def test_prefetch_hides_a_weight_load_under_the_previous_layer(tmp_path):
    """A compute-bound layer, then a weight-bound one: with prefetch_weights the second's
    weights load during the first (bounded by the buffer left free)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 64 * 64, 16))
    shape = (1, 8, 64, 64)
    slow = dict(flash_bw=1e7)
    off = chip(tmp_path, name="off", **slow).accelerator
    on = chip(tmp_path, name="on", array="prefetch_weights = true", **slow).accelerator
    small = chip(tmp_path, name="small", array="prefetch_weights = true\nweight_buffer_bytes = 8192",
                 **slow).accelerator
    p_off, p_on, p_small = (fodlam.profile(net, shape, accelerator=a) for a in (off, on, small))
    conv_s = p_off.nodes[0].latency_s
    fc_off, fc_on = p_off.nodes[-1].latency_s, p_on.nodes[-1].latency_s
    assert fc_on < fc_off
    # at most the conv's time is hidden (its weights are tiny: the port idles through it)
    assert fc_off - fc_on == pytest.approx(min(conv_s - 8 * 8 * 9 / 1e7, fc_off), rel=0.05)
    # a small buffer bounds what can be fetched ahead: 8 KB minus the conv's weights
    hidden_small = fc_off - p_small.nodes[-1].latency_s
    assert 0 < hidden_small <= (8192 - 8 * 8 * 9) / 1e7 * 1.0001
    assert "fetched ahead" in p_on.nodes[-1].estimates[0].how
    # a sweep sums the same way
    from fodlam.sweeps import cost_nodes
    from fodlam.importers.torch import import_module

    nodes = import_module(net, shape).nodes
    assert cost_nodes(nodes, on)["latency_s"] == pytest.approx(p_on.total_latency_s, rel=1e-12)


def test_two_cores_split_a_layer(tmp_path):
    one = chip(tmp_path, name="one")
    two = chip(tmp_path, name="two", array='cores = 2\ncore_split = "m"\nsplit_cycles = 10')
    conv = L.conv(1, 64, 64, (16, 16), 3, 1, 1)
    m1, m2 = one.estimate(conv).mapping, two.estimate(conv).mapping
    assert m2["mac_cycles"] == m1["mac_cycles"] / 2
    assert m2["fixed_cycles"] == 10
    # each core reads the whole input: the maps port moves it twice
    n = nests(conv)[0]
    assert m2["port_bytes"]["sram"] - m1["port_bytes"]["sram"] == pytest.approx(n.in_elems)
    # a depthwise layer splits its channels (the groups) instead
    dw = L.conv(1, 64, 64, (16, 16), 3, 1, 1, groups=64)
    assert two.estimate(dw).mapping["mac_cycles"] == one.estimate(dw).mapping["mac_cycles"] / 2


def test_op_class_rates_and_passes(tmp_path):
    tail = """
[ops]
add = 0.5
mul = 2.0
softmax = 1.0
softmax_passes = 7
"""
    model = chip(tmp_path, tail=tail)
    n = 10_000
    add = L.Elementwise("eltwise", "add", 2 * n, n, n)
    mul = L.Elementwise("eltwise", "mul", 2 * n, n, n)
    sm = L.Elementwise("eltwise", "softmax", n, n, 5 * n)
    relu = L.Elementwise("eltwise", "relu", n, n, n)
    assert cycles(model, add) == pytest.approx(n / 0.5)
    assert cycles(model, mul) == pytest.approx(n / 2.0)
    assert cycles(model, sm) == pytest.approx(7 * n)
    # no rate for activations: vector_width (the widest unrolling's lanes) ops per cycle
    assert cycles(model, relu) == pytest.approx(n / model.vector_width)


def test_array_and_vector_unit_in_turn(tmp_path):
    conv = L.conv(1, 8, 8, (32, 32), 1)
    overlap = chip(tmp_path, name="ov", array="output_elements_per_cycle = 1")
    serial = chip(tmp_path, name="se", array="output_elements_per_cycle = 1\noverlap = false")
    mo, ms = overlap.estimate(conv).mapping, serial.estimate(conv).mapping
    assert mo["cycles"] == max(mo["mac_cycles"], mo["output_cycles"])
    assert ms["cycles"] == ms["mac_cycles"] + ms["output_cycles"]


def test_tile_issue_cycles(tmp_path):
    model = chip(tmp_path, array="tile_cycles = 20\ntile_positions = 64")
    gemm = L.fc(256, 64, 64)
    mp = model.estimate(gemm).mapping
    # dense unrolling c8 x m8: 8 x 8 weight tiles, each over ceil(256 / 64) row tiles
    assert mp["tiles"] == 8 * 8 * 4 and mp["fixed_cycles"] == 20 * 8 * 8 * 4


def test_nothing_stays_in_a_port_beyond_its_capacity(tmp_path):
    """Maps that do not fit the port that holds them go to the weights' memory."""
    model = chip(tmp_path, sram="capacity_bytes = 1000", flash_bw=1e8)
    add = L.Elementwise("eltwise", "add", 20_000, 10_000, 10_000)
    mp = model.estimate(add)
    assert "flash" in mp.how
    fits = chip(tmp_path, name="fits", flash_bw=1e8).estimate(add)
    assert mp.latency_s > 10 * fits.latency_s


def test_fusion_chain_from_a_residual_add(tmp_path):
    """add + batch norm + ReLU in one pass where [pipeline] chains_from says so."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x):
            return torch.relu(self.bn(self.a(x) + self.b(x)))

    pipe = '\n[pipeline]\nabsorbs = ["bias", "activation", "batchnorm"]\nelements_per_cycle = 256\n'
    plain = chip(tmp_path, name="p", array="op_cycles = 50", tail=pipe).accelerator
    chained = chip(tmp_path, name="q", array="op_cycles = 50",
                   tail=pipe + 'chains_from = ["add"]\n').accelerator
    shape = (1, 8, 16, 16)
    pp, pc = (fodlam.profile(Res(), shape, accelerator=a) for a in (plain, chained))
    add = next(n for n in pc.nodes if "add" in n.node.op)
    after = [n for n in pc.nodes if n.fused_into == add.name]
    assert len(after) == 2 and not add.fused_into           # batch norm and ReLU
    assert not any(n.fused_into for n in pp.nodes)
    # two launches fewer: 2 x 50 fixed cycles saved, the chain hidden under the add's pass
    assert pp.total_latency_s - pc.total_latency_s >= 2 * 50 / CLOCK * 0.99


@pytest.mark.parametrize("table, message", [
    ('[array]\n[[array.unroll]]\nname = "x"\napplies = ["conv"]\ndims = { q = 4 }\n', "unknown dimension 'q'"),
    ('[array]\n[[array.unroll]]\nname = "x"\napplies = ["conv"]\ndims = { m = 4 }\n', "no [[array.unroll]] applies to"),
    ('[array]\n[[array.unroll]]\nname = "x"\napplies = ["conv", "gemm", "depthwise", "product"]\n'
     'dims = { k = 4, c = 2 }\n', "name k or c and t, not both"),
    ('[array]\ncores = 0\n', "cores = 0 must be positive"),
    ('[array]\n[[array.unroll]]\nname = "x"\napplies = ["conv", "gemm", "depthwise", "product"]\n'
     'dims = { m = 4 }\n[[ports]]\nname = "a"\nholds = ["maps", "disk"]\nbytes_per_s = 1e9\n', "unknown: disk"),
])
def test_a_bad_declaration_is_one_line(tmp_path, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(BASE + table)
    with pytest.raises(ConfigError) as e:
        fodlam.load_accelerator(str(path))
    assert message in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)


def test_the_systolic_arrays_are_the_same_declaration(tmp_path):
    """TPU v1's and NVDLA's weight-stationary arrays unroll the reduction (input channels x
    taps) on array_k rows and the output channels on array_n columns: a chip declared with
    that unrolling takes the same steps as the systolic engine's weight tiles x rows (the
    systolic engine adds its fill and drain, double buffering, shared buffer, Winograd and
    group packing on top; docs/model.md)."""
    ak, an = 32, 16
    text = BASE.replace('activations = "resident"', 'activations = "resident"\ndram_bytes_per_s = 1e15') + f"""
[array]

[[array.unroll]]
name = "weight-stationary"
applies = ["conv", "gemm", "depthwise", "product"]
dims = {{ k = {ak}, m = {an} }}
"""
    (tmp_path / "ws.toml").write_text(text)
    declared = for_accelerator(str(tmp_path / "ws.toml"))
    systolic = for_accelerator("tpu-v1")
    from fodlam.accelerator import load_accelerator
    from fodlam.engines import WeightStationary

    tpu = load_accelerator("tpu-v1").architecture
    from dataclasses import replace

    arch = replace(tpu, array_k=ak, array_n=an, double_buffered=False, weight_format="dense")
    ws = WeightStationary("ws", arch, None, systolic.array.energy)
    for layer in (L.fc(100, 70, 40), L.conv(2, 8, 24, (9, 9), 3, 1, 1), L.fc(1, 512, 512)):
        n = nests(layer)[0]
        mp = ws.mapping(n)
        rows_steps = mp["folds"] * n.rows * n.steps * n.groups     # weight tiles x rows each
        assert mp["cycles"] - mp["fill_drain_cycles"] == rows_steps
        assert declared.estimate(layer).mapping["mac_cycles"] == rows_steps


def test_declared_fields_sweep_like_any_other():
    from fodlam.sweeps import apply_overrides, sweepable_fields

    acc = fodlam.load_accelerator("ethos-u55-128")
    fields = sweepable_fields(acc)
    assert {"array.op_cycles", "array.cores", "ops.add", "ops.softmax_passes"} <= set(fields)
    slow = apply_overrides(acc, (("array.op_cycles", 1000), ("ops.add", 0.1)))
    add = L.Elementwise("eltwise", "add", 2000, 1000, 1000)
    t_base = for_accelerator(acc).estimate(add).latency_s
    t_slow = for_accelerator(slow).estimate(add).latency_s
    assert t_slow == pytest.approx((1000 + 1000 / 0.1) / 500e6) and t_slow > t_base
    assert acc.array.op_cycles == 64 and len(slow.array.unroll) == len(acc.array.unroll)


def test_per_buffer_capacities(tmp_path):
    """An input beyond the input buffer is tiled (every tile passes the weights again);
    outputs beyond the accumulators come in blocks of output channels, each re-reading the
    input."""
    conv = L.conv(1, 64, 64, (32, 32), 3, 1, 1)      # 64 KiB in, 64 KiB out at 8 bits
    n = nests(conv)[0]
    base = chip(tmp_path, name="b").estimate(conv).mapping
    small_in = chip(tmp_path, name="i", array="input_buffer_bytes = 16384").estimate(conv).mapping
    assert small_in["input_tiles"] == 4
    assert small_in["port_bytes"]["flash"] == pytest.approx(4 * base["port_bytes"]["flash"])
    small_acc = chip(tmp_path, name="a", array="accumulator_bytes = 65536").estimate(conv).mapping
    # 64 channels x 1024 positions x 4 B = 256 KiB of partial sums: blocks of 16 channels
    assert small_acc["accumulator_blocks"] == 4
    assert small_acc["port_bytes"]["sram"] - base["port_bytes"]["sram"] == pytest.approx(3 * n.in_elems)


def test_a_trained_models_batch_norm_folds_into_the_ethos_output_stage():
    """A PyTorch model with conv - batch norm - ReLU, as users bring it: on Ethos-U the batch
    norm is the per-channel scale the output stage applies (TFLite and Vela fold it), so it
    and the ReLU cost no pass of their own."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    p = fodlam.profile(net, (1, 8, 32, 32), accelerator="ethos-u55-128")
    conv = p.nodes[0]
    assert [n.fused_into for n in p.nodes[1:]] == [conv.name, conv.name]


def test_a_gather_reads_the_rows_it_gathers():
    """An embedding of a 50,000-row table reads its 128 rows, not the table (which would
    also spill past the SRAM)."""
    model = for_accelerator("ethos-u55-256")
    gather = L.Elementwise("gather", "embedding", 50_000 * 768, 128 * 768, 128 * 768)
    est = model.estimate(gather)
    assert est.latency_s < 1e-3 and "flash" not in est.how
