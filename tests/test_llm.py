"""LLM generation (issue 18): prefill, then decode steps reading the KV cache, on every
decoder family the tests can build from a config; MACs per phase against hand formulas."""

import json

import pytest

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")

import fodlam  # noqa: E402
from fodlam.accelerator import bundled  # noqa: E402

H, I, V, NH = 64, 128, 100, 4
HD = H // NH


def llama_like(cls_cfg, cls_model, kv=2, layers=2, meta=True, **extra):
    cfg = cls_cfg(hidden_size=H, intermediate_size=I, num_hidden_layers=layers,
                  num_attention_heads=NH, num_key_value_heads=kv, vocab_size=V, **extra)
    if meta:
        with torch.device("meta"):
            return cls_model(cfg).eval(), cfg
    torch.manual_seed(0)
    return cls_model(cfg).eval(), cfg


def swiglu_step_macs(cfg, ctx, tokens=1, window=None):
    """One forward of `tokens` new tokens per sequence with `ctx` positions already cached
    (decode: tokens = 1), logits of the last position only."""
    kv = cfg.num_key_value_heads
    layers = cfg.num_hidden_layers
    proj = H * NH * HD + 2 * H * kv * HD + NH * HD * H
    mlp = 3 * H * I
    attn = 0
    for t in range(tokens):
        seen = ctx + t + 1
        if window:
            seen = min(seen, window)
        attn += 2 * NH * seen * HD
    return layers * ((proj + mlp) * tokens + attn) + H * V


@pytest.mark.parametrize("family", ["llama-gqa", "qwen2", "mistral-sliding"])
def test_decode_macs_equal_the_hand_formula(family):
    if family == "llama-gqa":
        model, cfg = llama_like(T.LlamaConfig, T.LlamaForCausalLM)
        window = None
    elif family == "qwen2":
        model, cfg = llama_like(T.Qwen2Config, T.Qwen2ForCausalLM)
        window = None
    else:
        model, cfg = llama_like(T.MistralConfig, T.MistralForCausalLM, sliding_window=12)
        window = 12
    P, N = 20, 9
    g = fodlam.generate_profile(model, prompt_len=P, new_tokens=N, accelerator="tpu-v1", samples=3)
    # the prompt pass: every projection for P tokens, and the attention products over the
    # whole P x P square (masked, causal or sliding, not shortened: as the fused kernel and
    # FlopCounterMode count them)
    layers, kv = cfg.num_hidden_layers, cfg.num_key_value_heads
    proj = H * NH * HD + 2 * H * kv * HD + NH * HD * H
    assert g.prefill.total_macs == layers * ((proj + 3 * H * I) * P + 2 * NH * P * P * HD) + H * V
    assert g.decode_first.total_macs == swiglu_step_macs(cfg, P, window=window)
    assert g.decode_last.total_macs == swiglu_step_macs(cfg, P + N - 2, window=window)
    # interpolation is exact for the MACs, at every unsampled step too
    assert g.decode_macs == sum(swiglu_step_macs(cfg, c, window=window) for c in range(P, P + N - 1))
    assert [s.context for s in g.samples] == [P, P + 4, P + 7]
    kv = cfg.num_key_value_heads
    positions = min(P + N - 1, window - 1) if window else P + N - 1
    assert g.kv_cache_bytes == cfg.num_hidden_layers * 2 * kv * HD * positions * g.deployed_bits // 8        # at the deployed width


def test_gpt2_and_mixtral_decode():
    with torch.device("meta"):
        gpt2 = T.GPT2LMHeadModel(T.GPT2Config(n_embd=H, n_layer=2, n_head=NH, vocab_size=V,
                                              n_positions=128)).eval()
    g = fodlam.generate_profile(gpt2, prompt_len=16, new_tokens=4, accelerator="nvdla-nv-full")

    def gpt2_step(ctx):
        return 2 * (H * 3 * H + H * H + 2 * H * 4 * H + 2 * NH * (ctx + 1) * HD) + H * V
    assert g.decode_first.total_macs == gpt2_step(16)
    assert g.decode_macs == sum(gpt2_step(c) for c in range(16, 19))

    cfg = T.MixtralConfig(hidden_size=H, intermediate_size=I, num_hidden_layers=1,
                          num_attention_heads=NH, num_key_value_heads=2, vocab_size=V,
                          num_local_experts=4, num_experts_per_tok=2)
    with torch.device("meta"):
        mixtral = T.MixtralForCausalLM(cfg).eval()
    g = fodlam.generate_profile(mixtral, prompt_len=8, new_tokens=3, batch=2, accelerator="tpu-v1")
    # decode: 2 sequences x top-2 of 4 experts, balanced: 4 assignments, 3 GEMMs each, the
    # router, the attention projections and products, and the head
    expected = 2 * (H * NH * HD + 2 * H * 2 * HD + NH * HD * H + H * 4 + 2 * NH * 9 * HD
                    + 2 * 3 * H * I + H * V)
    assert g.decode_first.total_macs == expected
    assert "routing" in " ".join(n.how for n in g.decode_first.nodes)


def test_results_keys_json_and_table():
    model, _ = llama_like(T.LlamaConfig, T.LlamaForCausalLM)
    g = fodlam.generate_profile(model, prompt_len=16, new_tokens=5, batch=2, accelerator="tpu-v1")
    data = json.loads(g.to_json())
    for key in ("prefill", "decode_first", "decode_last", "time_to_first_token_s",
                "decode_latency_s_per_token", "decode_energy_j_per_token", "tokens_per_s",
                "energy_per_token_j", "total_energy_j", "total_latency_s", "kv_cache_bytes",
                "decode_bytes_per_token", "bound"):
        assert key in data, key
        assert getattr(g, key) is not None
    assert data["time_to_first_token_s"] == g.prefill.total_latency_s
    assert g.total_latency_s == pytest.approx(g.time_to_first_token_s + 4 * g.decode_latency_s_per_token)
    assert g.total_energy_j == pytest.approx(g.prefill.total_energy_j + 4 * 2 * g.decode_energy_j_per_token)
    assert g.tokens_per_s == pytest.approx(2 * 5 / g.total_latency_s)
    assert g.energy_per_token_j == pytest.approx(g.total_energy_j / 10)
    assert set(g.bound) == {"prefill", "decode"} and g.bound["decode"].endswith("bound")
    assert "time to first token" in str(g) and "interpolated" in str(g)


def test_interpolated_steps_equal_traced_ones():
    model, _ = llama_like(T.LlamaConfig, T.LlamaForCausalLM)
    few = fodlam.generate_profile(model, prompt_len=24, new_tokens=9, accelerator="nvdla-nv-full", samples=2)
    every = fodlam.generate_profile(model, prompt_len=24, new_tokens=9, accelerator="nvdla-nv-full", samples=8)
    assert len(every.samples) == 8 and len(few.samples) == 2
    assert few.decode_macs == every.decode_macs
    assert few.decode_latency_s == pytest.approx(every.decode_latency_s, rel=0.01)
    assert few.decode_energy_j == pytest.approx(every.decode_energy_j, rel=0.01)


def test_a_users_real_cache_and_weights():
    model, cfg = llama_like(T.LlamaConfig, T.LlamaForCausalLM, meta=False)
    with torch.no_grad():
        out = model(torch.zeros(1, 12, dtype=torch.long), use_cache=True)
    cache = out.past_key_values
    p = fodlam.profile(model, (1, 1), past_key_values=cache, use_cache=True, logits_to_keep=1)
    assert p.total_macs == swiglu_step_macs(cfg, 12)
    assert cache.get_seq_length() == 12          # the user's cache is not touched
    g = fodlam.generate_profile(model, prompt_len=12, new_tokens=3)     # fake path, real weights
    assert g.decode_first.total_macs == swiglu_step_macs(cfg, 12)


def test_not_a_causal_lm_says_what_is_needed():
    from fodlam.errors import InputError

    with pytest.raises(InputError, match="causal language model"):
        fodlam.generate_profile(torch.nn.Linear(4, 4), prompt_len=4, new_tokens=2)


@pytest.mark.parametrize("meta", [False, True], ids=["weights", "meta"])
def test_encoder_decoder_t5(meta):
    """The encoder runs once over the prompt (with the decoder's start token); each decode
    step reads the decoder's self-attention cache and the prompt's cross-attention cache."""
    cfg = T.T5Config(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
                     vocab_size=50, d_kv=16)
    if meta:
        with torch.device("meta"):
            t5 = T.T5ForConditionalGeneration(cfg).eval()
    else:
        t5 = T.T5ForConditionalGeneration(cfg).eval()
    P, N = 10, 6
    g = fodlam.generate_profile(t5, prompt_len=P, new_tokens=N, accelerator="tpu-v1")

    def step(c):                 # decoder, per layer: self q,k,v,o; cross q,o; products; FFN
        per_layer = 4 * 32 * 32 + 2 * 2 * (c + 1) * 16 + 2 * 32 * 32 + 2 * 2 * P * 16 + 2 * 32 * 64
        return 2 * per_layer + 32 * 50
    assert g.decode_first.total_macs == step(1)
    assert g.decode_macs == sum(step(c) for c in range(1, N))
    encoder = 2 * (4 * 32 * 32 * P + 2 * 2 * P * P * 16 + 2 * 32 * 64 * P)
    cross_kv = 2 * 2 * 32 * 32 * P
    assert g.prefill.total_macs == encoder + cross_kv + step(0)
    # the self-attention cache holds N positions at the end; the cross cache P
    assert g.kv_cache_bytes == 2 * 2 * 2 * 16 * (N + P) * g.deployed_bits // 8        # at the deployed width


@pytest.mark.parametrize("acc", bundled())
def test_decode_physics_on_every_profile(acc):
    """Per-token cost grows with the context; batching decode never costs more per token;
    where the profile reads weights from DRAM, a decode step never takes less than reading
    them once at its bandwidth."""
    model, _ = llama_like(T.LlamaConfig, T.LlamaForCausalLM, layers=1)
    one = fodlam.generate_profile(model, prompt_len=16, new_tokens=40, accelerator=acc)
    assert one.decode_last.total_latency_s >= one.decode_first.total_latency_s * (1 - 1e-9)
    assert one.decode_last.total_energy_j >= one.decode_first.total_energy_j * (1 - 1e-9)
    four = fodlam.generate_profile(model, prompt_len=16, new_tokens=40, batch=4, accelerator=acc)
    assert four.decode_energy_j_per_token <= one.decode_energy_j_per_token * (1 + 1e-9)
    # the hybrid profile sends each nest to its least-energy engine: a batch may move the
    # GEMVs from the sparse engine to the slower array, by at most the engines' power ratio
    from fodlam.models import for_accelerator

    cm = for_accelerator(acc)
    step = (float(cm.fc["power_w"]) / float(cm.conv["p_array_w"])
            if getattr(cm, "rule", None) == "energy" else 1.0)
    assert four.decode_latency_s_per_token / 4 <= step * one.decode_latency_s_per_token * (1 + 1e-9)
    from fodlam.accelerator import load_accelerator
    from fodlam.engines import precision

    a = load_accelerator(acc)
    if a.cost_model == "fodlam-roofline":       # weights come from DRAM (the sparse engine
        arch = a.architecture                   # of the hybrid profile keeps them on chip)
        weights = sum(l.weight_elems * precision(arch, l.bits) / 8
                      for n in one.decode_first.nodes for l in n.node.layers if l.macs)
        port = next((p for p in a.ports if "weights" in p.holds), None)   # a declared chip's
        bw = port.effective_bytes_per_s(arch.clock_mhz * 1e6) if port else arch.dram_bytes_per_s
        assert one.decode_first.total_latency_s >= weights / bw * (1 - 1e-9)


def test_static_cache():
    """cache="static": a StaticCache of prompt + new tokens positions, as
    generate(cache_implementation="static") builds it; every decode step attends over all of
    them (masked), so its MACs do not grow."""
    model, cfg = llama_like(T.LlamaConfig, T.LlamaForCausalLM)
    P, N = 12, 5
    g = fodlam.generate_profile(model, prompt_len=P, new_tokens=N, cache="static", accelerator="tpu-v1")
    assert {s.macs for s in g.samples} == {swiglu_step_macs(cfg, P + N - 1)}
    kv = cfg.num_key_value_heads
    assert g.kv_cache_bytes == cfg.num_hidden_layers * 2 * kv * HD * (P + N) * g.deployed_bits // 8        # at the deployed width
    from fodlam.errors import InputError

    with pytest.raises(InputError, match="dynamic"):
        fodlam.generate_profile(model, prompt_len=P, new_tokens=N, cache="paged")


FACTORY = '''
import torch, transformers as T

def tiny_llama():
    cfg = T.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, vocab_size=100)
    with torch.device("meta"):
        return T.LlamaForCausalLM(cfg).eval()
'''


def test_fodlam_llm_command(tmp_path):
    from conftest import run_cli

    (tmp_path / "llms.py").write_text(FACTORY)
    out, page = tmp_path / "gen.json", tmp_path / "gen.html"
    r = run_cli("llm", f"{tmp_path / 'llms.py'}:tiny_llama", "--prompt", "32", "--generate", "8",
                "--batch", "2", "--accelerator", "tpu-v1", "--format", "json", "-o", str(out),
                "--html", str(page))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["schema"] == "fodlam-generation" and data["batch"] == 2
    assert data["tokens_per_s"] > 0 and data["prefill"]["total"]["macs"] > 0
    assert "time to first token" in page.read_text() and "generation-data" in page.read_text()
    r = run_cli("llm", str(tmp_path / "missing.onnx"), "--prompt", "8")
    assert r.returncode == 2 and "missing.onnx" in r.stderr and "Traceback" not in r.stderr


class OnnxDecoder(torch.nn.Module):
    """One attention layer that takes its KV cache as inputs and returns it (a 'with-past'
    export): what generation from an ONNX file needs."""

    def __init__(self, d=32, v=50):
        super().__init__()
        self.emb = torch.nn.Embedding(v, d)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(d, d) for _ in range(4))
        self.head = torch.nn.Linear(d, v)

    def forward(self, input_ids, past_key, past_value):
        x = self.emb(input_ids)
        k = torch.cat([past_key, self.k(x)], 1)
        v = torch.cat([past_value, self.v(x)], 1)
        a = torch.softmax(self.q(x) @ k.transpose(1, 2), -1) @ v
        return self.head(self.o(a)), k, v


def test_generation_from_an_onnx_decoder_with_past_inputs(tmp_path):
    from conftest import run_cli

    path = tmp_path / "decoder.onnx"
    ids, past = torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, 32)
    torch.onnx.export(OnnxDecoder().eval(), (ids, past, past), str(path), dynamo=False,
                      input_names=["input_ids", "past_key", "past_value"],
                      output_names=["logits", "present_key", "present_value"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence_length"},
                                    "past_key": {0: "batch", 1: "past_sequence_length"},
                                    "past_value": {0: "batch", 1: "past_sequence_length"}})
    P, N = 8, 5
    g = fodlam.generate_profile(str(path), prompt_len=P, new_tokens=N, accelerator="tpu-v1")

    def step(c):
        return 4 * 32 * 32 + 2 * (c + 1) * 32 + 32 * 50
    assert g.prefill.total_macs == 4 * 32 * 32 * P + 2 * P * P * 32 + 32 * 50 * P
    assert g.decode_macs == sum(step(c) for c in range(P, P + N - 1))
    assert g.kv_cache_bytes == 2 * (P + N - 1) * 32 * g.deployed_bits // 8        # at the deployed width
    r = run_cli("llm", str(path), "--prompt", "8", "--generate", "5", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["decode_steps"] == 4
    # a graph without past inputs: a one-line error that says what is needed
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(4, 4), (torch.zeros(1, 4),), str(plain), dynamo=False)
    r = run_cli("llm", str(plain), "--prompt", "8")
    assert r.returncode == 2 and "KV cache" in r.stderr and "Traceback" not in r.stderr


def test_llm_entries_in_a_sweep(tmp_path):
    from conftest import run_cli

    (tmp_path / "llms.py").write_text(FACTORY)
    (tmp_path / "sweep.toml").write_text('''
[sweep]
batches = [1, 4]

[[models]]
torch = "llms.py:tiny_llama"
name = "tiny"
llm = { prompt_len = [16, 64], new_tokens = [8] }

[[accelerators]]
profile = "tpu-v1"
[accelerators.grid]
"architecture.dram_bytes_per_s" = [34e9, 136e9]
''')
    r = run_cli("sweep", str(tmp_path / "sweep.toml"), "-o", str(tmp_path / "out"), "--jobs", "1",
                "-q", "--no-cache")
    assert r.returncode == 0, r.stderr
    import csv

    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert len(rows) == 2 * 2 * 2
    assert {r["model"] for r in rows} == {"tiny@prompt16+8", "tiny@prompt64+8"}
    for row in rows:
        assert row["status"] == "ok" and float(row["energy_per_token_j"]) > 0
    # the same point as a direct generate_profile
    import importlib.util

    spec = importlib.util.spec_from_file_location("llms_t", tmp_path / "llms.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    g = fodlam.generate_profile(mod.tiny_llama(), prompt_len=64, new_tokens=8, batch=4, accelerator="tpu-v1")
    row = next(r for r in rows if r["model"] == "tiny@prompt64+8" and r["batch"] == "4"
               and "34000000000" in r["overrides"])
    assert float(row["energy_j"]) == pytest.approx(g.total_energy_j, rel=1e-9)
    assert float(row["decode_latency_s_per_token"]) == pytest.approx(g.decode_latency_s_per_token, rel=1e-9)
    # more bandwidth never makes a token dearer; the report draws joules per token
    r = run_cli("report", str(tmp_path / "out.csv"), "--html", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    assert "joules per token" in (tmp_path / "r.html").read_text()


def test_a_context_past_the_models_limit_is_refused(tmp_path):
    """Issue 30, item 3: prompt + generated tokens beyond n_positions / max_position_embeddings
    is a one-line error in the API and the CLI."""
    from fodlam.errors import InputError
    from conftest import run_cli

    cfg = T.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=32)
    with pytest.raises(InputError, match="33 positions, more than the model's 32"):
        fodlam.generate_profile(T.GPT2LMHeadModel(cfg), prompt_len=30, new_tokens=4)
    ok = fodlam.generate_profile(T.GPT2LMHeadModel(cfg), prompt_len=29, new_tokens=4)
    assert ok.decode_steps == 3
    (tmp_path / "g.py").write_text(
        "import transformers as T\n"
        "def make():\n"
        "    return T.GPT2LMHeadModel(T.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2,"
        " n_positions=32))\n")
    r = run_cli("llm", f"{tmp_path / 'g.py'}:make", "--prompt", "40", "--generate", "8")
    assert r.returncode == 2 and "more than the model's 32" in r.stderr and "Traceback" not in r.stderr


def test_llm_json_is_compact_by_default(tmp_path):
    """Issue 30, item 7: the JSON holds the summary and each sampled phase's totals; every
    layer with --layers."""
    from conftest import run_cli

    (tmp_path / "g.py").write_text(
        "import transformers as T\n"
        "def make():\n"
        "    return T.GPT2LMHeadModel(T.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2,"
        " n_positions=64))\n")
    r = run_cli("llm", f"{tmp_path / 'g.py'}:make", "--prompt", "16", "--generate", "8",
                "--format", "json")
    full = run_cli("llm", f"{tmp_path / 'g.py'}:make", "--prompt", "16", "--generate", "8",
                   "--format", "json", "--layers")
    small, big = json.loads(r.stdout), json.loads(full.stdout)
    assert "nodes" not in small["prefill"] and small["prefill"]["total"]["macs"] > 0
    assert big["prefill"]["nodes"] and len(r.stdout) * 5 < len(full.stdout)
    assert small["decode_latency_s_per_token"] == big["decode_latency_s_per_token"]


def test_bytes_are_counted_at_the_deployed_width():
    """Issue 30, item 2: on TPU v1 (int8) an fp32 model's weights and cache count one byte an
    element, as the latency does; per token is per step over the batch."""
    cfg = T.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = T.LlamaForCausalLM(cfg)
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    tpu = fodlam.generate_profile(model, prompt_len=16, new_tokens=8, batch=4, accelerator="tpu-v1")
    assert tpu.deployed_bits == 8 and tpu.weight_bytes == params          # 1 byte each
    nv = fodlam.generate_profile(model, prompt_len=16, new_tokens=8, batch=4,
                                 accelerator="nvdla-nv-full")
    assert nv.deployed_bits == 16 and nv.weight_bytes == 2 * params
    assert nv.kv_cache_bytes == 2 * tpu.kv_cache_bytes
    assert tpu.decode_bytes_per_token == pytest.approx(tpu.decode_bytes_per_step / 4)
    data = json.loads(tpu.to_json(layers=False))
    assert data["decode_bytes_per_step"] > data["decode_bytes_per_token"] > 0
