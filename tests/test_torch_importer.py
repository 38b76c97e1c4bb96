"""PyTorch importer: MACs against hand formulas, state untouched, meta device, API, ONNX parity."""

import json
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fodlam  # noqa: E402
from fodlam.errors import FodlamError  # noqa: E402

from conftest import ROOT, run_cli  # noqa: E402

sys.path.insert(0, str(ROOT))
from examples import zoo  # noqa: E402


def conv_macs(cin, cout, k, hout, wout, groups=1):
    return cout * hout * wout * (cin // groups) * k * k


def resnet_hand(block, depths, size=224, classes=1000):
    h = size // 2
    total = conv_macs(3, 64, 7, h, h)
    h //= 2
    cin = 64
    for i, (width, n) in enumerate(zip((64, 128, 256, 512), depths)):
        for j in range(n):
            stride = 2 if (j == 0 and i > 0) else 1
            ho = h // stride
            if block == "basic":
                cout = width
                total += conv_macs(cin, width, 3, ho, ho) + conv_macs(width, cout, 3, ho, ho)
            else:
                cout = width * 4
                total += conv_macs(cin, width, 1, h, h) + conv_macs(width, width, 3, ho, ho) + \
                    conv_macs(width, cout, 1, ho, ho)
            if stride != 1 or cin != cout:
                total += conv_macs(cin, cout, 1, ho, ho)
            cin, h = cout, ho
    return total + cin * classes


def mobilenet_v2_hand(size=224):
    h = size // 2
    total = conv_macs(3, 32, 3, h, h)
    cin = 32
    for t, c, n, s in zoo.MOBILENET_V2_CONFIG:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            if t != 1:
                total += conv_macs(cin, hidden, 1, h, h)
            ho = (h + 2 - 3) // stride + 1
            total += conv_macs(hidden, hidden, 3, ho, ho, groups=hidden)
            total += conv_macs(hidden, c, 1, ho, ho)
            cin, h = c, ho
    return total + conv_macs(cin, 1280, 1, h, h) + 1280 * 1000


def transformer_hand(tokens, dim, depth, mlp, batch=1):
    per_layer = 4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * mlp
    return batch * depth * per_layer


def test_resnet18_exact_and_state_unchanged():
    model = zoo.resnet18()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prof = fodlam.profile(model, (1, 3, 224, 224))
    assert prof.total_macs == resnet_hand("basic", (2, 2, 2, 2)) == 1_814_073_344
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not prof.unmodeled
    names = {n.name for n in prof.nodes}
    assert "layer3.1.conv2" in names and "fc" in names
    node = next(n for n in prof.nodes if n.name == "layer3.1.conv2")
    assert node.node.origin["module_type"] == "Conv2d" and "convolution" in node.op


def test_resnet50_and_batch():
    prof = fodlam.profile(zoo.resnet50(), (2, 3, 224, 224))
    assert prof.total_macs == 2 * resnet_hand("bottleneck", (3, 4, 6, 3))
    assert prof.batch == 2
    by_kind = prof.by_kind()
    assert by_kind["conv"]["macs"] + by_kind["fc"]["macs"] == prof.total_macs
    assert by_kind["norm"]["count"] == 53 and by_kind["norm"]["macs"] == 0


def test_depthwise_mobilenet_v2():
    prof = fodlam.profile(zoo.mobilenet_v2(), (1, 3, 224, 224))
    assert prof.total_macs == mobilenet_v2_hand()
    assert 300e6 < prof.total_macs < 302e6  # the published 300 M MACs


def test_transformer_encoder_vit():
    prof = fodlam.profile(zoo.vit_tiny(), (1, 3, 224, 224))
    tokens = 197
    patch = 192 * 196 * 3 * 16 * 16
    expect = patch + transformer_hand(tokens, 192, 12, 768) + 192 * 1000
    assert prof.total_macs == expect
    assert prof.by_kind()["matmul"]["macs"] == 12 * 2 * tokens * tokens * 192


def test_causal_decoder_integer_tokens():
    model = zoo.GPT(vocab=1000, context=64, dim=64, depth=2, heads=4)
    prof = fodlam.profile(model, (2, 16))  # integer tokens chosen for the embedding
    expect = transformer_hand(16, 64, 2, 256, batch=2) + 2 * 16 * 64 * 1000
    assert prof.total_macs == expect
    assert prof.by_kind()["gather"]["count"] == 2


def test_lstm_language_model_counts_every_gate_and_step():
    prof = fodlam.profile(zoo.lstm_lm(), (35, 20))
    seq, batch, d = 35, 20, 650
    lstm = 2 * seq * batch * 4 * d * (d + d)
    assert prof.total_macs == lstm + seq * batch * d * 10000
    rnn = [n for n in prof.nodes if n.kind == "rnn"]
    assert len(rnn) == 1 and rnn[0].name == "rnn" and rnn[0].macs == lstm


def test_gru_bidirectional_batch_first():
    model = nn.GRU(8, 16, num_layers=2, batch_first=True, bidirectional=True)
    prof = fodlam.profile(model, (3, 5, 8))
    assert prof.total_macs == 2 * 5 * 3 * 3 * 16 * (8 + 16) + 2 * 5 * 3 * 3 * 16 * (32 + 16)


def test_two_inputs_and_example_inputs():
    model = zoo.TwoInputNet()
    prof = fodlam.profile(model, [(2, 3, 8, 8), (2, 10)])
    expect = 2 * (conv_macs(3, 16, 3, 8, 8) + 10 * 16 + 32 * 4)
    assert prof.total_macs == expect
    meta_inputs = (torch.empty(2, 3, 8, 8, device="meta"), torch.empty(2, 10, device="meta"))
    assert fodlam.profile(model, inputs=meta_inputs).total_macs == expect
    kw = {"image": torch.randn(2, 3, 8, 8), "features": torch.randn(2, 10)}
    assert fodlam.profile(model, inputs=kw).total_macs == expect


def test_meta_device_model():
    with torch.device("meta"):
        model = zoo.GPT(vocab=1000, context=64, dim=64, depth=2, heads=4)
    assert next(model.parameters()).is_meta
    prof = fodlam.profile(model, (1, 16))
    assert prof.total_macs == transformer_hand(16, 64, 2, 256) + 16 * 64 * 1000
    assert next(model.parameters()).is_meta


def test_transposed_conv_unet():
    prof = fodlam.profile(zoo.UNetTiny(), (1, 3, 32, 32))
    expect = (conv_macs(3, 16, 3, 16, 16) + conv_macs(16, 32, 3, 8, 8)
              + 32 * 8 * 8 * 16 * 16 + 32 * 16 * 16 * 8 * 16 + 8 * 32 * 32)
    assert prof.total_macs == expect


def test_multihead_attention_module():
    mha = nn.MultiheadAttention(64, 4, batch_first=True)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    prof = fodlam.profile(Wrap(), (2, 10, 64))
    assert prof.total_macs == 2 * (4 * 10 * 64 * 64 + 2 * 10 * 10 * 64)


def test_profile_object_api():
    prof = fodlam.profile(zoo.resnet18(), (1, 3, 224, 224))
    assert prof.total_energy_j > 0 and prof.total_latency_s > 0
    top = prof.top(3)
    assert len(top) == 3 and top[0].energy_j >= top[1].energy_j >= top[2].energy_j
    mods = prof.by_module(depth=1)
    assert {"layer1", "layer2", "layer3", "layer4", "fc", "conv1"} <= set(mods)
    assert sum(m["macs"] for m in mods.values()) == prof.total_macs
    data = json.loads(prof.to_json())
    assert data["schema"] == "fodlam-profile" and data["total"]["macs"] == prof.total_macs
    assert data["nodes"][0]["origin"]["module"] == "conv1"
    assert prof.to_csv().splitlines()[0].startswith("name,op,kind,module")
    assert "FODLAM profile" in str(prof) and "<table>" in prof._repr_html_()
    pd = pytest.importorskip("pandas")
    df = prof.to_dataframe()
    assert isinstance(df, pd.DataFrame) and df["macs"].sum() == prof.total_macs


def test_errors_are_fodlam_errors():
    with pytest.raises(FodlamError, match="nn.Module"):
        fodlam.profile(object(), (1, 3))
    with pytest.raises(FodlamError, match="tracing"):
        fodlam.profile(nn.Linear(4, 2), (1, 5))
    with pytest.raises(FodlamError, match="positive"):
        fodlam.profile(nn.Linear(4, 2), (0, 4))


def test_cli_torch_factory():
    r = run_cli("torch", "examples.zoo:resnet18", "--input-shape", "1,3,224,224",
                "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["total"]["macs"] == 1_814_073_344 and data["model"]["name"] == "examples.zoo:resnet18"
    r = run_cli("torch", "examples.zoo:nope", "--input-shape", "1,3,8,8")
    assert r.returncode == 2 and "no attribute 'nope'" in r.stderr
    r = run_cli("torch", "examples.zoo:resnet18", "--input-shape", "1,3,224,224",
                "--format", "json", "--max-energy", "1 uJ")
    assert r.returncode == 1 and "exceeds the budget" in r.stderr


# ---- the same model through both importers -------------------------------------------------

PARITY = {
    "resnet18": (zoo.resnet18, (1, 3, 224, 224)),
    "mobilenet_v2": (zoo.mobilenet_v2, (1, 3, 224, 224)),
    "vit": (lambda: zoo.ViT(image=64, patch=16, dim=64, depth=2, heads=4, mlp=128), (1, 3, 64, 64)),
    "gpt": (lambda: zoo.GPT(vocab=500, context=64, dim=64, depth=2, heads=4), (1, 32)),
    "lstm": (lambda: zoo.LSTMLanguageModel(vocab=500, dim=64), (12, 3)),
    "unet": (zoo.UNetTiny, (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_torch_and_onnx_agree(name, tmp_path):
    factory, shape = PARITY[name]
    model = factory().eval()
    prof_t = fodlam.profile(model, shape)
    dtype = torch.long if name in ("gpt", "lstm") else torch.float32
    example = torch.zeros(shape, dtype=dtype)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["x"])
    prof_o = fodlam.profile_onnx(path)
    assert prof_o.total_macs == pytest.approx(prof_t.total_macs, rel=0.005)
    kt, ko = prof_t.by_kind(), prof_o.by_kind()
    for kind in ("conv", "fc", "matmul", "rnn"):
        if kind in kt or kind in ko:
            assert ko[kind]["macs"] == pytest.approx(kt[kind]["macs"], rel=0.01), kind
    assert not prof_o.unmodeled and not prof_t.unmodeled


def test_unbatched_pooling_bilinear_and_lazy_modules():
    pool = fodlam.profile(nn.AvgPool2d(2), (3, 8, 8))          # unbatched (C, H, W)
    assert pool.total_ops == 3 * 4 * 4 * 4 and not pool.unmodeled
    pool1d = fodlam.profile(nn.MaxPool1d(3), (2, 4, 12))
    assert pool1d.total_ops == 2 * 4 * 4 * 3
    bil = fodlam.profile(nn.Bilinear(5, 7, 3), [(4, 5), (4, 7)])
    assert bil.total_macs == 4 * 5 * 7 * 3 and not bil.unmodeled
    with pytest.raises(FodlamError, match="lazy"):
        fodlam.profile(nn.LazyLinear(4), (2, 8))


def test_every_torch_nn_module_sample():
    """torch's own module_db: sample inputs for ~150 nn modules. Each profiles or ends in a
    FodlamError (lazy modules, data-dependent losses); nothing else, nothing unmodeled."""
    from torch.testing._internal.common_modules import module_db

    profiled, failed, unmodeled = 0, 0, set()
    for info in module_db:
        try:
            samples = list(info.module_inputs_func(info, device="cpu", dtype=torch.float32,
                                                   requires_grad=False, training=False))
        except Exception:  # noqa: BLE001 - a sample generator torch itself cannot run here
            continue
        for sample in samples[:3]:
            try:
                module = info.module_cls(*sample.constructor_input.args,
                                         **sample.constructor_input.kwargs)
            except Exception:  # noqa: BLE001
                continue
            args = sample.forward_input.args
            if not all(isinstance(a, torch.Tensor) for a in args):
                continue
            try:
                prof = fodlam.profile(module, inputs=tuple(args), **sample.forward_input.kwargs)
            except FodlamError:
                failed += 1
                continue
            profiled += 1
            unmodeled |= set(prof.unmodeled)
    assert profiled > 250 and failed < 40, (profiled, failed)
    assert not unmodeled, unmodeled


def test_tied_and_shared_parameters_trace_once():
    """An LM head tied to its embedding, and one Linear used twice: one fake per tensor,
    every use counted."""
    import torch

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(100, 32)
            self.mid = torch.nn.Linear(32, 32)
            self.head = torch.nn.Linear(32, 100, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            h = self.mid(torch.relu(self.mid(self.emb(ids))))
            return self.head(h)

    model = Tied()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prof = fodlam.profile(model, (2, 16))
    assert prof.total_macs == 2 * 16 * (2 * 32 * 32 + 32 * 100)
    assert not prof.unmodeled
    assert model.head.weight is model.emb.weight
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_script_module_is_a_one_line_error():
    import torch
    from fodlam.errors import InputError

    with pytest.raises(InputError, match="pass the eager nn.Module"):
        fodlam.profile(torch.jit.script(torch.nn.Linear(4, 4)), (1, 4))


class _DataDependent(__import__("torch").nn.Module):
    def __init__(self):
        import torch
        super().__init__()
        self.a = torch.nn.Linear(8, 16)
        self.b = torch.nn.Linear(16, 4)

    def forward(self, x):
        import torch
        h = torch.relu(self.a(x))
        if h.sum() > 0:                      # a branch on a value
            h = h * 2
        return self.b(h[h[:, 0] > -1])       # a boolean mask: the shape depends on the data


def test_data_dependent_model_needs_and_uses_real_inputs():
    import torch
    from fodlam.errors import ModelError

    model = _DataDependent()
    with pytest.raises(ModelError, match="real example inputs="):
        fodlam.profile(model, (4, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prof = fodlam.profile(model, inputs=torch.randn(4, 8))
    assert prof.total_macs == 4 * 8 * 16 + 4 * 16 * 4 and not prof.unmodeled
    assert prof.model["trace"].startswith("real forward pass")
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.device("meta"):
        meta = _DataDependent()
    with pytest.raises(ModelError, match="real example inputs="):
        fodlam.profile(meta, inputs=torch.randn(4, 8))


def test_quantized_modules_keep_their_macs_at_8_bits():
    import torch
    import torch.ao.nn.quantized as nnq

    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    dyn = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
    prof = fodlam.profile(dyn, (2, 16))
    assert prof.total_macs == 2 * (16 * 32 + 32 * 4) and not prof.unmodeled
    assert [layer.bits for n in prof.nodes for layer in n.node.layers if layer.macs] == [8, 8]

    class Static(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nnq.Quantize(0.1, 0, torch.quint8)
            self.c = nnq.Conv2d(3, 8, 3, padding=1)
            self.f = nnq.Linear(8 * 8 * 8, 10)
            self.dq = nnq.DeQuantize()

        def forward(self, x):
            return self.dq(self.f(self.c(self.q(x)).flatten(1)))

    prof = fodlam.profile(Static(), inputs=torch.randn(1, 3, 8, 8))
    assert prof.total_macs == 3 * 8 * 9 * 64 + 512 * 10 and not prof.unmodeled
    assert {layer.bits for n in prof.nodes for layer in n.node.layers if layer.macs} == {8}


def test_weight_and_activation_density_reach_the_sparse_engine(tmp_path):
    import torch
    import torch.nn.utils.prune as prune

    from fodlam.errors import InputError

    net = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    dense = fodlam.profile(net, (1, 256))
    prune.l1_unstructured(net[0], "weight", amount=0.9)          # masks applied in the forward
    prof = fodlam.profile(net, (1, 256), weight_density="measure", activation_density=0.5)
    fcs = [layer for n in prof.nodes for layer in n.node.layers if layer.kind == "fc"]
    assert [round(f.weight_density, 3) for f in fcs] == [0.1, 1.0]
    assert all(f.activation_density == 0.5 for f in fcs)
    assert prof.total_macs == dense.total_macs                    # MACs stay the dense count
    assert prof.total_latency_s < 0.6 * dense.total_latency_s     # EIE skips the zeros
    data = json.loads(prof.to_json())
    assert data["nodes"][0]["layers"][0]["weight_density"] == pytest.approx(0.1, abs=1e-3)
    by_module = fodlam.profile(net, (1, 256), weight_density={"2": 0.25})
    assert [layer.weight_density for n in by_module.nodes for layer in n.node.layers
            if layer.kind == "fc"] == [1.0, 0.25]
    with pytest.raises(InputError, match="no parameters"):
        fodlam.profile(net, (1, 256), weight_density={"nope": 0.5})
    with torch.device("meta"):
        meta = torch.nn.Linear(8, 8)
    with pytest.raises(InputError, match="meta device"):
        fodlam.profile(meta, (1, 8), weight_density="measure")

    # ONNX: measuring reads the weights only when asked
    prune.remove(net[0], "weight")
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(net.eval(), (torch.randn(1, 256),), str(path), dynamo=False)
    onnx_prof = fodlam.profile_onnx(path, weight_density="measure")
    assert [round(layer.weight_density, 3) for n in onnx_prof.nodes for layer in n.node.layers
            if layer.kind == "fc"] == [0.1, 1.0]
    r = run_cli(str(path), "--weight-density", "0.2", "--format", "json", script="fodlam-onnx")
    assert r.returncode == 0, r.stderr
    assert {layer["weight_density"] for n in json.loads(r.stdout)["nodes"] for layer in n["layers"]
            if layer["kind"] == "fc"} == {0.2}


def test_grouped_mm_and_routing_ops_are_lowered():
    import torch

    class Grouped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 32, 64, dtype=torch.bfloat16))

        def forward(self, x):
            offs = torch.tensor([4, 8, 12, 16], dtype=torch.int32)
            torch.histc(x.float().sum(-1), bins=4)
            return torch._grouped_mm(x, self.w, offs=offs)

    prof = fodlam.profile(Grouped(), (16, 32), dtype=torch.bfloat16)
    assert prof.total_macs == 16 * 32 * 64 and not prof.unmodeled
    assert {n.kind for n in prof.nodes if n.macs} == {"fc"}
