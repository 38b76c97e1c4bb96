"""Real exported and quantized models through the ONNX importer."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort_quant = pytest.importorskip("onnxruntime.quantization")

import fodlam  # noqa: E402
from examples import zoo  # noqa: E402


def export(model, example, path, opset=17, **kw):
    torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                      input_names=["x"], **kw)
    return path


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(torch.flatten(x, 1))


CNN_MACS = 16 * 16 * 16 * 3 * 9 + 32 * 8 * 8 * 16 * 9 + 2048 * 10


@pytest.mark.parametrize("opset", [11, 13, 15, 17, 20])
def test_opsets(tmp_path, opset):
    p = export(SmallCNN(), torch.randn(1, 3, 16, 16), tmp_path / f"m{opset}.onnx", opset)
    prof = fodlam.profile_onnx(p)
    assert prof.total_macs == CNN_MACS and not prof.unmodeled


def test_dynamic_quantization(tmp_path):
    float_path = export(SmallCNN(), torch.randn(1, 3, 16, 16), tmp_path / "f.onnx", 17)
    q_path = tmp_path / "q.onnx"
    ort_quant.quantize_dynamic(str(float_path), str(q_path), weight_type=ort_quant.QuantType.QInt8)
    prof = fodlam.profile_onnx(q_path)
    ops = {n.op for n in prof.nodes}
    assert ops & {"ConvInteger", "MatMulInteger", "com.microsoft.DynamicQuantizeMatMul",
                  "com.microsoft.MatMulIntegerToFloat"}, ops
    assert prof.total_macs == CNN_MACS
    assert not prof.unmodeled
    assert any(n.node.origin.get("bits") == 8 for n in prof.nodes if n.macs)


class Reader(ort_quant.CalibrationDataReader):
    def __init__(self):
        self.data = iter([{"x": np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32)}
                          for i in range(4)])

    def get_next(self):
        return next(self.data, None)


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_static_quantization(tmp_path, fmt):
    float_path = export(SmallCNN(), torch.randn(1, 3, 16, 16), tmp_path / "f.onnx", 17)
    q_path = tmp_path / "q.onnx"
    ort_quant.quantize_static(str(float_path), str(q_path), Reader(),
                              quant_format=getattr(ort_quant.QuantFormat, fmt))
    prof = fodlam.profile_onnx(q_path)
    assert prof.total_macs == CNN_MACS
    assert not prof.unmodeled
    if fmt == "QOperator":
        assert "QLinearConv" in {n.op for n in prof.nodes}
    else:  # weights' DequantizeLinear is folded at load time, and costs nothing
        deq = [n for n in prof.nodes if n.op == "DequantizeLinear" and "constant-foldable" in n.how]
        assert deq and all(n.energy_j == 0 for n in deq)


def test_dynamic_batch_and_sequence_transformer(tmp_path):
    model = zoo.GPT(vocab=300, context=64, dim=64, depth=2, heads=4)
    p = tmp_path / "gpt.onnx"
    torch.onnx.export(model.eval(), (torch.zeros(1, 16, dtype=torch.long),), str(p), dynamo=False,
                      input_names=["ids"], dynamic_axes={"ids": {0: "batch", 1: "seq"}})
    a = fodlam.profile_onnx(p, dims={"batch": 2, "seq": 16})
    b = fodlam.profile_onnx(p, input_shapes={"ids": (2, 16)})
    t = fodlam.profile(model, (2, 16))
    assert a.total_macs == b.total_macs == t.total_macs
    assert a.batch == 2


def test_local_functions_are_inlined(tmp_path):
    model = SmallCNN()
    p = tmp_path / "fn.onnx"
    torch.onnx.export(model.eval(), (torch.randn(1, 3, 16, 16),), str(p), dynamo=False,
                      export_modules_as_functions={torch.nn.Conv2d, torch.nn.Linear})
    import onnx
    assert len(onnx.load(str(p)).functions) >= 1
    prof = fodlam.profile_onnx(p)
    assert prof.total_macs == CNN_MACS and not prof.unmodeled
    assert any("inlined" in w for w in prof.warnings)


def test_legacy_dynamic_axes_errors_name_the_users_dimensions(tmp_path):
    """The legacy exporter's dynamic_axes names live on the graph inputs; shape inference
    invents internal names (unk__N) for what follows from them. Errors name the user's."""
    from conftest import run_cli

    model = zoo.GPT(vocab=300, context=64, dim=64, depth=2, heads=4)
    p = tmp_path / "gpt.onnx"
    torch.onnx.export(model.eval(), (torch.zeros(1, 16, dtype=torch.long),), str(p), dynamo=False,
                      input_names=["ids"], dynamic_axes={"ids": {0: "batch", 1: "seq"}})
    r = run_cli(str(p), script="fodlam-onnx")
    assert r.returncode == 2 and "--dim batch=VALUE" in r.stderr and "seq" in r.stderr
    r = run_cli(str(p), "--dim", "batch=1", script="fodlam-onnx")
    flag = r.stderr.split("set it with")[1].split("(")[0]
    assert r.returncode == 2 and flag.strip() == "--dim seq=VALUE"
    r = run_cli(str(p), "--dim", "batch=1", "--dim", "seq=16", "--format", "json", script="fodlam-onnx")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("external", [False, True])
def test_annotated_model_loads_and_runs_unchanged(tmp_path, external):
    """--annotate copies the weights (also from external data inside the model's folder):
    onnxruntime loads the annotated model and its outputs equal the original's."""
    import onnx
    import onnxruntime as ort

    from conftest import run_cli

    src = export(SmallCNN(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx", 17)
    if external:
        m = onnx.load(str(src))
        onnx.save_model(m, str(src), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="m.weights", size_threshold=0)
        assert (tmp_path / "m.weights").stat().st_size > 1000
    out = tmp_path / "annotated" / "a.onnx"
    out.parent.mkdir()
    r = run_cli(str(src), "--annotate", str(out), "--format", "json", script="fodlam-onnx")
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    name = ort.InferenceSession(str(src)).get_inputs()[0].name
    a = ort.InferenceSession(str(src)).run(None, {name: x})[0]
    b = ort.InferenceSession(str(out)).run(None, {name: x})[0]
    assert np.array_equal(a, b)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert float(meta["fodlam.total_energy_j"]) > 0
