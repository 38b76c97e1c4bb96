"""A model on the meta device traces on meta tensors (no FakeTensorMode: issue 22's speed
goal); the result is node for node what the fake path gives for the same model with
weights, and a forward the meta path cannot follow falls back to fakes."""

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from fodlam.importers.torch import import_module  # noqa: E402


def _nodes(imported):
    return [(n.name, n.op, n.macs, tuple(l.kind for l in n.layers), n.inputs) for n in imported.nodes]


def _pair(factory, shape):
    real = factory().eval()
    with torch.device("meta"):
        meta = factory().eval()
    return import_module(real, shape), import_module(meta, shape)


@pytest.mark.parametrize("name", ["gpt2_small", "resnet18"])
def test_meta_path_equals_fake_path(name):
    from examples import zoo

    shape = (1, 32) if name == "gpt2_small" else (1, 3, 64, 64)
    fake, meta = _pair(getattr(zoo, name), shape)
    assert "fake" in fake.network["trace"] and "meta" in meta.network["trace"]
    assert _nodes(fake) == _nodes(meta)


def test_transformers_llama_on_meta_equals_fake():
    T = pytest.importorskip("transformers")
    cfg = T.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, vocab_size=500)
    fake, meta = _pair(lambda: T.LlamaForCausalLM(cfg), (1, 16))
    assert "meta" in meta.network["trace"]
    assert _nodes(fake) == _nodes(meta)
    assert sum(n.macs for n in meta.nodes) > 0


def test_a_forward_meta_cannot_follow_falls_back_to_fakes():
    class CpuConstant(nn.Module):
        """Creates a CPU tensor in its forward: meta tensors cannot mix with it."""

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(x) + torch.ones(8)

    with torch.device("meta"):
        m = CpuConstant()
    imported = import_module(m, (2, 8))
    assert "fake" in imported.network["trace"]
    assert sum(n.macs for n in imported.nodes) == 2 * 8 * 8
