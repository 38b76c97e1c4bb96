"""ONNX importer: every op family against hand formulas, subgraphs, dims, errors, annotate."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fodlam
from fodlam.errors import FodlamError, UnmodeledError

from conftest import run_cli

F = TensorProto.FLOAT


def weight(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype=dtype), name)


def make_model(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=(), path=None,
               value_info=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits),
                              value_info=list(value_info))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=ops)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def prof(path, **kw):
    return fodlam.profile_onnx(path, **kw)


def test_conv_grouped_strided_dilated(tmp_path):
    p = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], group=4,
                          dilations=[1, 1], name="c")],
        [vi("x", [2, 8, 32, 32])], [vi("y", None)], [weight("w", (16, 2, 3, 3))],
        path=tmp_path / "m.onnx")
    pr = prof(p)
    (node,) = pr.nodes
    assert node.kind == "conv"
    assert node.macs == 2 * 16 * 16 * 16 * 2 * 9
    layer = node.node.layers[0]
    assert layer.out_size == (16, 16) and layer.groups == 4


def test_conv_auto_pad_same_and_1d_3d(tmp_path):
    p = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER"),
         helper.make_node("Conv", ["a", "wa"], ["b"]),
         helper.make_node("Conv", ["v", "wv"], ["u"], pads=[1, 1, 1, 1, 1, 1])],
        [vi("x", [1, 3, 15, 15]), vi("a", [1, 4, 50]), vi("v", [1, 2, 8, 8, 8])],
        [vi("y", None), vi("b", None), vi("u", None)],
        [weight("w", (8, 3, 3, 3)), weight("wa", (6, 4, 5)), weight("wv", (4, 2, 3, 3, 3))],
        path=tmp_path / "m.onnx")
    a, b, c = prof(p).nodes
    assert a.macs == 8 * 8 * 8 * 3 * 9          # ceil(15/2) = 8
    assert b.macs == 6 * 46 * 4 * 5
    assert c.macs == 4 * 8 * 8 * 8 * 2 * 27


def test_depthwise(tmp_path):
    p = make_model([helper.make_node("Conv", ["x", "w"], ["y"], group=32, pads=[1, 1, 1, 1])],
                   [vi("x", [1, 32, 56, 56])], [vi("y", None)], [weight("w", (32, 1, 3, 3))],
                   path=tmp_path / "m.onnx")
    assert prof(p).total_macs == 32 * 56 * 56 * 9


def test_conv_transpose(tmp_path):
    p = make_model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2],
                                     pads=[1, 1, 1, 1], group=2)],
                   [vi("x", [1, 8, 16, 16])], [vi("y", None)], [weight("w", (8, 3, 4, 4))],
                   path=tmp_path / "m.onnx")
    (n,) = prof(p).nodes
    assert n.node.layers[0].out_size == (32, 32)
    assert n.macs == 8 * 16 * 16 * 3 * 16  # in_ch x in_pixels x (out_ch/groups) x kernel


def test_gemm_and_matmul_weight_vs_activations(tmp_path):
    p = make_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc"),
         helper.make_node("MatMul", ["t", "wt"], ["u"], name="lin"),
         helper.make_node("MatMul", ["q", "k"], ["s"], name="scores")],
        [vi("x", [4, 100]), vi("t", [2, 10, 64]), vi("q", [2, 4, 10, 16]), vi("k", [2, 4, 16, 10])],
        [vi("y", None), vi("u", None), vi("s", None)],
        [weight("w", (50, 100)), weight("b", (50,)), weight("wt", (64, 32))],
        path=tmp_path / "m.onnx")
    nodes = {n.name: n for n in prof(p).nodes}
    assert nodes["fc"].kind == "fc" and nodes["fc"].macs == 4 * 100 * 50
    assert nodes["lin"].kind == "fc" and nodes["lin"].macs == 20 * 64 * 32
    assert nodes["scores"].kind == "matmul" and nodes["scores"].macs == 2 * 4 * 10 * 16 * 10


def test_einsum(tmp_path):
    p = make_model([helper.make_node("Einsum", ["a", "b"], ["c"], equation="bhqd,bhkd->bhqk")],
                   [vi("a", [2, 3, 5, 8]), vi("b", [2, 3, 7, 8])], [vi("c", None)],
                   path=tmp_path / "m.onnx")
    assert prof(p).total_macs == 2 * 3 * 5 * 7 * 8


@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_all_gates_both_directions(tmp_path, op, gates):
    seq, batch, inp, hid = 7, 3, 10, 20
    p = make_model([helper.make_node(op, ["x", "W", "R"], ["y"], hidden_size=hid,
                                     direction="bidirectional")],
                   [vi("x", [seq, batch, inp])], [vi("y", None)],
                   [weight("W", (2, gates * hid, inp)), weight("R", (2, gates * hid, hid))],
                   path=tmp_path / "m.onnx")
    (n,) = prof(p).nodes
    assert n.kind == "rnn"
    assert n.macs == 2 * seq * batch * gates * hid * (inp + hid)


def test_quantized_ops_record_precision(tmp_path):
    u8 = TensorProto.UINT8
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.uint8), "z")
    p = make_model(
        [helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "z", "s", "z"], ["y"],
                          pads=[1, 1, 1, 1]),
         helper.make_node("QLinearMatMul", ["a", "s", "z", "wm", "s", "z", "s", "z"], ["b"]),
         helper.make_node("MatMulInteger", ["a", "wm"], ["c"]),
         helper.make_node("ConvInteger", ["x", "w"], ["d"], pads=[1, 1, 1, 1])],
        [vi("x", [1, 4, 8, 8], u8), vi("a", [3, 16], u8)],
        [vi("y", None, u8), vi("b", None, u8), vi("c", None, TensorProto.INT32),
         vi("d", None, TensorProto.INT32)],
        [scale, zp, weight("w", (8, 4, 3, 3), np.uint8), weight("wm", (16, 5), np.uint8)],
        path=tmp_path / "m.onnx")
    qc, qm, mi, ci = prof(p).nodes
    assert qc.macs == ci.macs == 8 * 8 * 8 * 4 * 9
    assert qm.macs == mi.macs == 3 * 16 * 5
    assert qc.node.origin["bits"] == 8 and qm.kind == "fc"


def test_ms_matmul_nbits_and_attention(tmp_path):
    b, s, d, heads = 2, 16, 64, 4
    nodes = [
        helper.make_node("MatMulNBits", ["x", "wq", "sc"], ["y"], domain="com.microsoft",
                         K=d, N=128, bits=4, block_size=32),
        helper.make_node("Attention", ["x", "wa", "ba"], ["att"], domain="com.microsoft",
                         num_heads=heads),
        helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["mha"], domain="com.microsoft",
                         num_heads=heads),
    ]
    p = make_model(
        nodes, [vi("x", [b, s, d]), vi("q", [b, s, d]), vi("k", [b, 10, d]), vi("v", [b, 10, d])],
        [vi("y", [b, s, 128]), vi("att", [b, s, d]), vi("mha", [b, s, d])],
        [weight("wq", (128, 2, 16), np.uint8), weight("sc", (256,)),
         weight("wa", (d, 3 * d)), weight("ba", (3 * d,))],
        extra_opsets=[("com.microsoft", 1)], path=tmp_path / "m.onnx")
    nbits, att, mha = prof(p).nodes
    assert nbits.macs == b * s * d * 128 and nbits.node.origin["bits"] == 4
    head = d // heads
    assert att.macs == b * s * d * 3 * d + 2 * (b * heads * s * s * head)
    assert mha.macs == 2 * (b * heads * s * 10 * head)
    assert "unmodeled" not in prof(p).by_kind()


def test_onnx_attention_opset23(tmp_path):
    p = make_model([helper.make_node("Attention", ["q", "k", "v"], ["y"])],
                   [vi("q", [1, 8, 32, 16]), vi("k", [1, 8, 40, 16]), vi("v", [1, 8, 40, 24])],
                   [vi("y", None)], opset=23, path=tmp_path / "m.onnx")
    assert prof(p).total_macs == 8 * 32 * 40 * 16 + 8 * 32 * 40 * 24


def test_non_mac_kinds_never_add_macs(tmp_path):
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["mp"], ["gap"]),
        helper.make_node("Softmax", ["gap"], ["sm"]),
        helper.make_node("ReduceMean", ["r"], ["rm"], keepdims=1),
        helper.make_node("Transpose", ["r"], ["tr"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["tr", "shape"], ["rs"]),
        helper.make_node("Resize", ["r", "", "scales"], ["up"], mode="linear"),
        helper.make_node("Gather", ["emb", "idx"], ["g1"]),
    ]
    c = 4
    p = make_model(
        nodes, [vi("x", [1, c, 8, 8]), vi("idx", [5], TensorProto.INT64)],
        [vi(n, None) for n in ("sm", "rm", "rs", "up", "g1")],
        [weight("g", (c,)), weight("b", (c,)), weight("m", (c,)), weight("v", (c,)),
         numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
         weight("emb", (100, 16))],
        path=tmp_path / "m.onnx")
    pr = prof(p)
    assert pr.total_macs == 0
    kinds = {n.op: n for n in pr.nodes}
    assert kinds["BatchNormalization"].kind == "norm"
    assert kinds["MaxPool"].kind == "pool" and kinds["MaxPool"].ops == c * 4 * 4 * 4
    assert kinds["Relu"].ops == c * 64
    assert kinds["Reshape"].ops == 0 and kinds["Reshape"].energy_j == 0
    assert kinds["Transpose"].kind == "data" and kinds["Transpose"].ops == c * 64
    assert kinds["Resize"].ops == c * 16 * 16 * 4
    assert kinds["Gather"].kind == "gather" and kinds["Gather"].ops == 5 * 16
    assert all(n.modeled for n in pr.nodes)
    assert all(n.energy_j > 0 for n in pr.nodes if n.op != "Reshape")


def test_unmodeled_is_reported_and_strict_errors(tmp_path):
    p = make_model([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("FancyOp", ["r"], ["y"], domain="my.domain")],
                   [vi("x", [1, 4])], [vi("y", [1, 4])], extra_opsets=[("my.domain", 1)],
                   path=tmp_path / "m.onnx")
    pr = prof(p)
    assert len(pr.nodes) == 2
    assert pr.unmodeled == {"my.domain.FancyOp": 1}
    assert pr.to_dict()["nodes"][1]["modeled"] is False
    with pytest.raises(UnmodeledError, match="FancyOp"):
        prof(p, strict=True)
    r = run_cli("onnx", str(p), "--strict")
    assert r.returncode == 2 and "FancyOp" in r.stderr and "Traceback" not in r.stderr


def test_if_costs_larger_branch_and_loop_multiplies(tmp_path):
    small = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["o1"])], "then",
                              [], [vi("o1", [1, 4])])
    big = helper.make_graph([helper.make_node("MatMul", ["x", "w2"], ["h"]),
                             helper.make_node("MatMul", ["h", "w3"], ["o2"])], "else",
                            [], [vi("o2", [1, 4])])
    body = helper.make_graph(
        [helper.make_node("MatMul", ["xs", "w1"], ["xo"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL), vi("xs", [1, 8])],
        [vi("cond_out", [], TensorProto.BOOL), vi("xo_s", [1, 4])])
    body.output[1].name = "xo"
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=small, else_branch=big),
             helper.make_node("Loop", ["trip", "", "x"], ["z"], body=body)]
    p = make_model(nodes, [vi("x", [1, 8]), vi("c", [], TensorProto.BOOL)],
                   [vi("y", [1, 4]), vi("z", [1, 8])],
                   [weight("w1", (8, 4)), weight("w2", (8, 16)), weight("w3", (16, 4)),
                    numpy_helper.from_array(np.array(5, np.int64), "trip")],
                   path=tmp_path / "m.onnx")
    if_node, loop = prof(p).nodes
    assert if_node.macs == 8 * 16 + 16 * 4 and "larger branch" in if_node.how
    assert loop.macs == 5 * 8 * 4 and "5 iterations" in loop.how


def test_symbolic_dims_flags(tmp_path):
    p = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                   [vi("x", ["batch", "seq", 32])], [vi("y", None)], [weight("w", (32, 8))],
                   path=tmp_path / "m.onnx")
    with pytest.raises(FodlamError, match=r"unresolved dimension batch.*--dim batch"):
        prof(p)
    assert prof(p, dims={"batch": 2, "seq": 10}).total_macs == 2 * 10 * 32 * 8
    assert prof(p, batch=3, dims={"seq": 4}).total_macs == 3 * 4 * 32 * 8
    assert prof(p, input_shapes={"x": (1, 7, 32)}).total_macs == 7 * 32 * 8
    r = run_cli("onnx", str(p), "--batch", "1")
    assert r.returncode == 2 and "'mm'" in r.stderr and "--dim seq" in r.stderr
    r = run_cli("onnx", str(p), "--input-shape", "x=2,5,32", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["total"]["macs"] == 2 * 5 * 32 * 8
    r = run_cli("onnx", str(p), "--input-shape", "nope=1,2")
    assert r.returncode == 2 and "no input 'nope'" in r.stderr


def test_json_schema_and_csv_and_annotate(tmp_path):
    p = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc1"),
                    helper.make_node("Relu", ["y"], ["z"], name="act")],
                   [vi("x", [1, 64])], [vi("z", None)], [weight("w", (64, 10))],
                   path=tmp_path / "m.onnx")
    out = tmp_path / "ann.onnx"
    r = run_cli("onnx", str(p), "--format", "json", "--annotate", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["total"]["macs"] == 640 and data["model"]["format"] == "onnx"
    assert data["by_kind"]["fc"]["macs"] == 640 and data["accelerator"]["name"]
    assert data["batch"] == 1
    node = data["nodes"][0]
    for key in ("name", "op", "kind", "macs", "energy_j", "latency_s", "modeled"):
        assert key in node
    ann = onnx.load(str(out))
    meta = {e.key: e.value for e in ann.metadata_props}
    assert float(meta["fodlam.total_energy_j"]) == pytest.approx(data["total"]["energy_j"])
    assert "FODLAM:" in ann.graph.node[0].doc_string
    csv_out = run_cli("onnx", str(p), "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("name,op,kind") and csv_out[1].startswith("fc1,Gemm,fc")


def test_budget_flags(tmp_path):
    p = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc1")],
                   [vi("x", [1, 64])], [vi("y", None)], [weight("w", (64, 10))],
                   path=tmp_path / "m.onnx")
    r = run_cli("onnx", str(p), "--format", "json", "--max-energy", "1 pJ")
    assert r.returncode == 1 and "exceeds the budget 1 pJ" in r.stderr and "fc1" in r.stderr
    assert run_cli("onnx", str(p), "--format", "json", "--max-energy", "1 J",
                   "--max-latency", "1").returncode == 0


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"this is not a model at all \x00\x01\x02", "not an ONNX model"),
])
def test_bad_files(tmp_path, content, needle):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    r = run_cli("onnx", str(p))
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_truncated_model_and_missing_file(tmp_path):
    p = make_model([helper.make_node("Gemm", ["x", "w"], ["y"])], [vi("x", [1, 64])],
                   [vi("y", None)], [weight("w", (64, 10))], path=tmp_path / "m.onnx")
    data = p.read_bytes()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    r = run_cli("onnx", str(tmp_path / "t.onnx"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("onnx", str(tmp_path / "nope.onnx"))
    assert r.returncode == 2 and "not found" in r.stderr
    r = run_cli("onnx", str(p), "--batch", "0")
    assert r.returncode == 2 and "--batch" in r.stderr


def test_external_data_not_read_and_escape_reported(tmp_path):
    w = weight("w", (64, 10))
    model_path = make_model([helper.make_node("Gemm", ["x", "w"], ["y"])], [vi("x", [1, 64])],
                            [vi("y", None)], [w], path=tmp_path / "m.onnx")
    m = onnx.load(str(model_path))
    init = m.graph.initializer[0]
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "2560")):
        e = init.external_data.add()
        e.key, e.value = k, v
    evil = tmp_path / "evil.onnx"
    onnx.save(m, str(evil))
    pr = prof(evil)
    assert pr.total_macs == 640
    assert any("outside the model's folder" in w for w in pr.warnings)


def test_torch_exported_cnn_matches_hand_count(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False,
                      input_names=["x"])
    pr = prof(path)
    expect = 16 * 32 * 32 * 3 * 9 + 16 * 32 * 32 * 9 + 16 * 10
    assert pr.total_macs == expect
    assert not pr.unmodeled
