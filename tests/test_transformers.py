"""Models as people write them: Hugging Face ``transformers`` architectures built from small
configs (random weights, no downloads), each profiled with exact MACs against a hand
formula and nothing unmodeled."""

import math
import warnings

import pytest

import fodlam

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'fodlam[test]')")

warnings.filterwarnings("ignore", module="transformers")
SEQ = 16
H, I, V, HEADS = 64, 128, 500, 4


def bert():
    cfg = T.BertConfig(hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
                       intermediate_size=I, vocab_size=V)
    # per layer: Q, K, V, O projections, the two attention products, the FFN; plus the pooler
    layer = 4 * SEQ * H * H + 2 * SEQ * SEQ * H + 2 * SEQ * H * I
    return T.BertModel(cfg), dict(input_shape=(1, SEQ)), 2 * layer + H * H


def gpt2():
    cfg = T.GPT2Config(n_embd=H, n_layer=2, n_head=HEADS, vocab_size=V, n_positions=64)
    layer = SEQ * H * 3 * H + 2 * SEQ * SEQ * H + SEQ * H * H + 2 * SEQ * H * 4 * H
    return T.GPT2LMHeadModel(cfg), dict(input_shape=(1, SEQ)), 2 * layer + SEQ * H * V  # tied head


def llama():
    cfg = T.LlamaConfig(hidden_size=H, intermediate_size=I, num_hidden_layers=2,
                        num_attention_heads=HEADS, num_key_value_heads=2, vocab_size=V)
    kv = 2 * (H // HEADS)                                  # grouped-query attention: 2 KV heads
    layer = 2 * SEQ * H * H + 2 * SEQ * H * kv + 2 * SEQ * SEQ * H + 3 * SEQ * H * I
    return T.LlamaForCausalLM(cfg), dict(input_shape=(1, SEQ)), 2 * layer + SEQ * H * V


def mixtral():
    cfg = T.MixtralConfig(hidden_size=H, intermediate_size=I, num_hidden_layers=2,
                          num_attention_heads=HEADS, num_key_value_heads=2, num_local_experts=4,
                          num_experts_per_tok=2, vocab_size=V)
    kv = 2 * (H // HEADS)
    attn = 2 * SEQ * H * H + 2 * SEQ * H * kv + 2 * SEQ * SEQ * H
    experts = SEQ * 2 * (2 * I * H + H * I)                # every token's top-2 experts
    layer = attn + SEQ * H * 4 + experts                   # + the router
    return T.MixtralForCausalLM(cfg), dict(input_shape=(1, SEQ)), 2 * layer + SEQ * H * V


def t5():
    cfg = T.T5Config(d_model=H, d_ff=I, num_layers=2, num_heads=HEADS, d_kv=H // HEADS,
                     vocab_size=V)
    attn = 4 * SEQ * H * H + 2 * SEQ * SEQ * H
    enc = attn + 2 * SEQ * H * I
    dec = 2 * attn + 2 * SEQ * H * I                       # self- and cross-attention
    ids = torch.zeros(1, SEQ, dtype=torch.long)
    return (T.T5ForConditionalGeneration(cfg), dict(inputs={"input_ids": ids, "decoder_input_ids": ids}),
            2 * enc + 2 * dec + SEQ * H * V)


def vit():
    cfg = T.ViTConfig(hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
                      intermediate_size=I, image_size=32, patch_size=8)
    tokens = (32 // 8) ** 2 + 1
    layer = 4 * tokens * H * H + 2 * tokens * tokens * H + 2 * tokens * H * I
    patches = 16 * 3 * 8 * 8 * H
    return T.ViTModel(cfg), dict(input_shape=(1, 3, 32, 32)), patches + 2 * layer + H * H


def whisper():
    cfg = T.WhisperConfig(d_model=H, encoder_layers=2, decoder_layers=2, encoder_attention_heads=HEADS,
                          decoder_attention_heads=HEADS, encoder_ffn_dim=I, decoder_ffn_dim=I,
                          num_mel_bins=16, max_source_positions=32, max_target_positions=32,
                          vocab_size=V, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                          decoder_start_token_id=1)
    frames, t_enc, t_dec = 64, 32, 8
    convs = frames * 16 * 3 * H + t_enc * H * 3 * H       # conv1 (stride 1), conv2 (stride 2)
    enc = 4 * t_enc * H * H + 2 * t_enc * t_enc * H + 2 * t_enc * H * I
    dec = (4 * t_dec * H * H + 2 * t_dec * t_dec * H                       # self-attention
           + 2 * t_dec * H * H + 2 * t_enc * H * H + 2 * t_dec * t_enc * H  # cross-attention
           + 2 * t_dec * H * I)
    inputs = {"input_features": torch.zeros(1, 16, frames),
              "decoder_input_ids": torch.zeros(1, t_dec, dtype=torch.long)}
    return T.WhisperModel(cfg), dict(inputs=inputs), convs + 2 * enc + 2 * dec


def mamba():
    state, expand, k = 8, 2, 4
    cfg = T.MambaConfig(hidden_size=H, num_hidden_layers=2, vocab_size=V, state_size=state)
    inner, dt_rank = expand * H, math.ceil(H / 16)
    layer = (SEQ * H * 2 * inner                     # in_proj
             + inner * (SEQ + k - 1) * k             # depthwise causal conv (padded, then cut)
             + SEQ * inner * (dt_rank + 2 * state)   # x_proj
             + SEQ * dt_rank * inner                 # dt_proj
             + SEQ * inner * state                   # the scan's state x C per step
             + SEQ * inner * H)                      # out_proj
    return T.MambaForCausalLM(cfg), dict(input_shape=(1, SEQ)), 2 * layer + SEQ * H * V


MODELS = {"bert": bert, "gpt2": gpt2, "llama": llama, "mixtral": mixtral, "t5": t5, "vit": vit,
          "whisper": whisper, "mamba": mamba}


@pytest.mark.parametrize("name", list(MODELS))
def test_transformers_model_exact_macs_nothing_unmodeled(name):
    torch.manual_seed(0)
    model, kwargs, macs = MODELS[name]()
    prof = fodlam.profile(model.eval(), **kwargs)
    assert prof.total_macs == macs, (prof.total_macs, macs)
    assert not prof.unmodeled, prof.unmodeled
    assert prof.total_energy_j > 0 and prof.model["trace"].startswith("fake tensors")


@pytest.mark.parametrize("impl", ["eager", "batched_mm", "grouped_mm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_mixture_of_experts_implementation(impl, dtype):
    model, kwargs, macs = mixtral()
    model.config._experts_implementation = impl
    prof = fodlam.profile(model.to(dtype).eval(), **kwargs)
    assert prof.total_macs == macs and not prof.unmodeled
    experts = [n for n in prof.nodes if n.op.startswith("experts:")]
    assert len(experts) == 2 and all("routing 'balanced'" in n.how for n in experts)
    assert {layer.kind for n in experts for layer in n.node.layers if layer.macs} == {"fc"}


def test_moe_routing_assumption_is_an_option():
    model, kwargs, macs = mixtral()
    balanced = fodlam.profile(model.eval(), accelerator="tpu-v1", **kwargs)
    focused = fodlam.profile(model, accelerator="tpu-v1", moe_routing="concentrated", **kwargs)
    assert focused.total_macs == balanced.total_macs == macs
    # the same tokens through 2 experts' weights instead of 4: fewer weight tiles to load
    assert focused.total_latency_s < balanced.total_latency_s
    assert any("routing 'concentrated'" in n.how for n in focused.nodes)
    with pytest.raises(fodlam.FodlamError, match="moe_routing"):
        fodlam.profile(model, moe_routing="random", **kwargs)


#: torch's dynamo exporter manages these (Mixtral and T5 stop inside the exporter); BERT's and
#: ViT's exported graphs drop the unused pooler, which is the whole difference
EXPORTED = {"bert": H * H, "gpt2": 0, "llama": 0, "vit": H * H, "whisper": 0, "mamba": 0}


@pytest.mark.parametrize("name", list(EXPORTED))
def test_onnx_export_agrees_with_the_torch_side(tmp_path, name):
    pytest.importorskip("onnxscript", reason="torch's dynamo exporter needs onnxscript")
    model, kwargs, macs = MODELS[name]()
    if "inputs" in kwargs:
        keys, args = list(kwargs["inputs"]), tuple(kwargs["inputs"].values())
    else:
        shape = kwargs["input_shape"]
        keys = ["pixel_values"] if len(shape) == 4 else ["input_ids"]
        args = (torch.zeros(shape) if len(shape) == 4 else torch.zeros(shape, dtype=torch.long),)

    class Out(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *xs):
            return self.m(**dict(zip(keys, xs)), return_dict=False)[0]

    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(Out(model.eval()), args, str(path), dynamo=True)
    onnx_prof = fodlam.profile_onnx(path)
    assert onnx_prof.total_macs == macs - EXPORTED[name] and not onnx_prof.unmodeled


def test_precision_reaches_layers_and_costs():
    """fp32 and bf16 operands reach the layers as 32 and 16 bits. A profile that computes
    in both (the template: [8, 16, 32]) costs them differently; NVDLA nv_full runs either
    at 16 bits and an int8-quantized model at 8; Eyeriss computes in 16 bits only."""
    model, kwargs, _ = llama()
    model.eval()
    fp32 = {acc: fodlam.profile(model, accelerator=acc, **kwargs)
            for acc in ("generic-template", "nvdla-nv-full", "eyeriss-eie-65nm")}
    assert {l.bits for n in fp32["generic-template"].nodes for l in n.node.layers if l.macs} == {32}
    bf16 = {acc: fodlam.profile(model.to(torch.bfloat16), accelerator=acc, **kwargs) for acc in fp32}
    model.float()
    assert {l.bits for n in bf16["generic-template"].nodes for l in n.node.layers if l.macs} == {16}
    # the MACs cost 1.5 instead of 4.6 pJ; the element-wise passes move the same bytes
    assert bf16["generic-template"].total_energy_j < 0.7 * fp32["generic-template"].total_energy_j
    for acc in ("nvdla-nv-full", "eyeriss-eie-65nm"):
        # the same 16-bit MACs; the bf16 model's casts to fp32 (around its norms and
        # softmax) are passes of their own, streamed through DRAM on NVDLA
        assert bf16[acc].total_energy_j == pytest.approx(fp32[acc].total_energy_j, rel=0.05)
    q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    int8 = fodlam.profile(q, accelerator="nvdla-nv-full", **kwargs)
    # the fc layers' energy halves (8-bit MACs and weights); the dynamic quantize and
    # dequantize steps around them are element-wise passes of their own through DRAM
    assert int8.total_energy_j < 0.8 * fp32["nvdla-nv-full"].total_energy_j
    fc8, fc16 = (p.by_kind()["fc"]["energy_j"] for p in (int8, fp32["nvdla-nv-full"]))
    assert fc8 < 0.6 * fc16
    assert "at 16 bits" in next(n.how for n in fp32["nvdla-nv-full"].nodes if n.macs)
