"""Costing LLM inference: a traced generation (``fodlam.nodes.GenerationTrace``, which the
importers record: ``importers.torch.trace_generation``, ``importers.onnx.trace_generation_onnx``)
costed on one cost model as a ``GenerationProfile`` — the prefill, the sampled decode
steps, and the steps between them interpolated. ``fodlam.generate_profile`` (``api``)
orchestrates; ``fodlam llm`` prints it.

Decode steps are sampled, not traced one by one: a step is traced at the first and the
last context of the generation (and the middle one); the steps in between are interpolated
linearly between the sampled ones. The MACs of a step are exactly linear in its context
(the attention products grow by one key and value per position; the weight GEMMs do not
change), so the MAC total is exact; latency and energy are interpolated, which is exact
where the cost model is linear in the context and within the two neighbouring samples
otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .nodes import GenerationTrace

SCHEMA = "fodlam-generation"
SCHEMA_VERSION = 1


@dataclass
class Step:
    """One sampled decode step: its context (tokens already in the cache) and totals."""

    context: int
    latency_s: float
    energy_j: float
    macs: int


@dataclass
class GenerationProfile:
    """Prefill and decode of a causal language model on an accelerator. Times in seconds,
    energies in joules, bytes at the model's own precision."""

    model: dict
    accelerator: dict
    prompt_len: int
    new_tokens: int
    batch: int
    prefill: object                      # Profile of the prompt pass
    decode_first: object                 # Profile of the first decode step
    decode_last: object                  # Profile of the last decode step
    samples: list = field(default_factory=list)       # [Step], the sampled decode steps
    decode_steps: int = 0
    decode_latency_s: float = 0.0        # all decode steps
    decode_energy_j: float = 0.0
    decode_macs: int = 0
    kv_cache_bytes: int = 0              # at the end of generation, at the deployed width
    weight_bytes: int = 0                # at the deployed width
    decode_bytes_per_step: float = 0.0   # weights + cache read by a decode step, mean
    deployed_bits: int = 0               # the width bytes are counted at (the latency's)
    bound: dict = field(default_factory=dict)
    how: str = ""
    warnings: list = field(default_factory=list)

    # ---- the figures users ask for -------------------------------------------------------
    @property
    def time_to_first_token_s(self) -> float:
        return self.prefill.total_latency_s

    @property
    def decode_latency_s_per_token(self) -> float:
        """Mean time of a decode step: the time between two tokens of a sequence (each step
        produces one token for every sequence of the batch)."""
        if self.decode_steps:
            return self.decode_latency_s / self.decode_steps
        return self.decode_first.total_latency_s

    @property
    def decode_energy_j_per_token(self) -> float:
        """Mean energy of a decode step per token it produces (per sequence of the batch)."""
        if self.decode_steps:
            return self.decode_energy_j / (self.decode_steps * self.batch)
        return self.decode_first.total_energy_j / self.batch

    @property
    def total_latency_s(self) -> float:
        return self.prefill.total_latency_s + self.decode_latency_s

    @property
    def total_energy_j(self) -> float:
        return self.prefill.total_energy_j + self.decode_energy_j

    @property
    def total_macs(self) -> int:
        return self.prefill.total_macs + self.decode_macs

    @property
    def generated_tokens(self) -> int:
        return self.batch * self.new_tokens

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens (all sequences) over the whole time, prefill included."""
        return self.generated_tokens / self.total_latency_s if self.total_latency_s else 0.0

    @property
    def energy_per_token_j(self) -> float:
        """All energy, prefill included, over the generated tokens."""
        return self.total_energy_j / self.generated_tokens

    @property
    def decode_bytes_per_token(self) -> float:
        """Bytes a decode step reads per generated token: per step over the batch (before
        0.3 this key held the per-step figure: see ``decode_bytes_per_step``)."""
        return self.decode_bytes_per_step / max(1, self.batch)

    KEYS = ("time_to_first_token_s", "decode_latency_s_per_token", "decode_energy_j_per_token",
            "tokens_per_s", "energy_per_token_j", "total_energy_j", "total_latency_s",
            "kv_cache_bytes", "decode_bytes_per_step", "decode_bytes_per_token", "deployed_bits")

    def to_dict(self, layers: bool = True) -> dict:
        """The generation as JSON data; ``layers=False`` keeps the summary and each sampled
        phase's totals (``prefill``, ``decode_first``, ``decode_last``: totals and by kind),
        not every layer (``fodlam llm --format json`` writes that; ``--layers`` all)."""
        from ._version import __version__

        def phase(p):
            if layers:
                return p.to_dict()
            return {"total": p._total_dict(), "by_kind": p.by_kind(), "unmodeled": p.unmodeled}

        out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "fodlam_version": __version__,
               "model": dict(self.model), "accelerator": dict(self.accelerator),
               "prompt_len": self.prompt_len, "new_tokens": self.new_tokens,
               "batch": self.batch}
        out.update({k: getattr(self, k) for k in self.KEYS})
        out.update(total_macs=self.total_macs, decode_steps=self.decode_steps,
                   weight_bytes=self.weight_bytes, bound=dict(self.bound), how=self.how,
                   decode_samples=[vars(s) for s in self.samples],
                   prefill=phase(self.prefill), decode_first=phase(self.decode_first),
                   decode_last=phase(self.decode_last), warnings=list(self.warnings))
        return out

    def to_json(self, indent: int | None = 2, layers: bool = True) -> str:
        return json.dumps(self.to_dict(layers=layers), indent=indent, allow_nan=False) + "\n"

    def summary_lines(self) -> list[str]:
        from .report.table import render_table
        from .units import format_count, format_si

        lines = [f"FODLAM generation profile of {self.model.get('name', '?')} on "
                 f"{self.accelerator.get('name', '?')}: prompt {self.prompt_len} tokens, "
                 f"{self.new_tokens} new tokens, batch {self.batch}"]
        rows = [
            ["time to first token", format_si(self.time_to_first_token_s, "s"),
             f"prefill, {self.bound.get('prefill', '?')}"],
            ["decode latency per token", format_si(self.decode_latency_s_per_token, "s"),
             f"mean of {self.decode_steps} step(s), {self.bound.get('decode', '?')}"],
            ["decode energy per token", format_si(self.decode_energy_j_per_token, "J"), ""],
            ["tokens per second", f"{self.tokens_per_s:.4g} tokens/s",
             f"{self.generated_tokens} generated tokens, prefill included"],
            ["energy per token", format_si(self.energy_per_token_j, "J"), "prefill included"],
            ["total energy", format_si(self.total_energy_j, "J"), ""],
            ["total latency", format_si(self.total_latency_s, "s"), ""],
            ["KV cache at the end", format_si(self.kv_cache_bytes, "B"), ""],
            ["bytes read per decode step", format_si(self.decode_bytes_per_step, "B"),
             f"weights {format_si(self.weight_bytes, 'B')} + cache, mean, at "
             f"{self.deployed_bits or '?'} bits"],
            ["MACs", format_count(self.total_macs),
             f"prefill {format_count(self.prefill.total_macs)}, decode "
             f"{format_count(self.decode_macs)}"],
        ]
        lines += render_table(["figure", "value", "note"], rows)
        lines.append("")
        lines.append(self.how)
        lines += [f"warning: {w}" for w in self.warnings]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.summary_lines())

    def __repr__(self) -> str:
        from .units import format_si

        return (f"<fodlam.GenerationProfile {self.model.get('name', '?')} on "
                f"{self.accelerator.get('name', '?')}: prompt {self.prompt_len} + "
                f"{self.new_tokens} tokens x {self.batch}, first token "
                f"{format_si(self.time_to_first_token_s, 's')}, "
                f"{format_si(self.decode_latency_s_per_token, 's')}/token, "
                f"{self.tokens_per_s:.4g} tokens/s, {format_si(self.energy_per_token_j, 'J')}/token>")

    def _display(self, markdown: bool) -> str:
        from .report.views import html_summary, markdown_summary
        from .units import format_si

        totals = [("time to first token", format_si(self.time_to_first_token_s, "s")),
                  ("decode latency per token", format_si(self.decode_latency_s_per_token, "s")),
                  ("tokens per second", f"{self.tokens_per_s:.4g}"),
                  ("energy per token", format_si(self.energy_per_token_j, "J")),
                  ("total energy", format_si(self.total_energy_j, "J")),
                  ("KV cache at the end", format_si(self.kv_cache_bytes, "B")),
                  ("bound", f"prefill {self.bound.get('prefill', '?')}, decode "
                            f"{self.bound.get('decode', '?')}")]
        rows = [[x.context, format_si(x.latency_s, "s"), format_si(x.energy_j, "J"), x.macs]
                for x in self.samples]
        title = (f"FODLAM generation profile of {self.model.get('name', '?')} on "
                 f"{self.accelerator.get('name', '?')}: prompt {self.prompt_len}, "
                 f"{self.new_tokens} new tokens, batch {self.batch}")
        make = markdown_summary if markdown else html_summary
        return make(title, totals, ["context", "latency", "energy", "MACs"], rows,
                    f"{len(rows)} sampled decode step(s) of {self.decode_steps}")

    def _repr_html_(self) -> str:
        return self._display(False)

    def _repr_markdown_(self) -> str:
        return self._display(True)

    def save_html(self, path) -> None:
        """The report page: figures with units, decode steps against context, time by kind
        per phase, top nodes (needs matplotlib)."""
        from ._io import atomic_write
        from .report.html import render_generation

        atomic_write(path, render_generation(self))


# ---- costing a traced generation -------------------------------------------------------

def _interpolated_sum(pts: list, first: int, steps: int) -> float:
    """Sum over the decode steps at contexts first .. first+steps-1 of a value sampled at
    some of them (``pts``: [(context, value)], ascending), linear between samples."""
    total = 0.0
    for c in range(first, first + steps):
        for (c0, v0), (c1, v1) in zip(pts, pts[1:]):
            if c0 <= c <= c1:
                total += v0 + (v1 - v0) * (c - c0) / (c1 - c0) if c1 > c0 else v0
                break
        else:
            total += pts[-1][1] if c > pts[-1][0] else pts[0][1]
    return total


def _dominant_bound(profile) -> str:
    by: dict = {}
    for n in profile.nodes:
        for e in n.estimates:
            if e.bound:
                key = e.bound.split(" + ")[0]
                by[key] = by.get(key, 0.0) + e.latency_s
    return max(by, key=by.get) if by else "element-wise"


def deployed_bits(cm, element_bytes: float) -> int:
    """The width a cost model computes a layer of the traced dtype in (0 where unknown)."""
    from .engines import precision

    arch = getattr(getattr(cm, "accelerator", None), "architecture", None)
    if arch is None or not element_bytes:
        return 0
    return precision(arch, int(round(element_bytes * 8)))


def cost_generation(trace: GenerationTrace, cm) -> GenerationProfile:
    """A traced generation costed on one cost model."""
    from .costed import cost_imported

    prompt_len, new_tokens, batch = trace.prompt_len, trace.new_tokens, trace.batch
    first, steps = trace.first, trace.steps
    prefill = cost_imported(trace.prefill, cm)
    decode = [(c, cost_imported(imp, cm)) for c, imp, _ in trace.decode]
    # bytes at the width the accelerator computes and stores in (the latency's), not the
    # traced dtype's: a bf16 model deployed in int8 reads half the bytes
    bits = deployed_bits(cm, trace.element_bytes)
    scale = bits / 8 / trace.element_bytes if bits and trace.element_bytes else 1.0
    read = [kv * scale for _, _, kv in trace.decode]
    weight_bytes = int(round(trace.weight_bytes * scale))
    samples_ = [Step(c, p.total_latency_s, p.total_energy_j, p.total_macs) for c, p in decode]
    gen = GenerationProfile(model=dict(prefill.model, prompt_len=prompt_len),
                            accelerator=prefill.accelerator,
                            prompt_len=prompt_len, new_tokens=new_tokens, batch=batch,
                            prefill=prefill, decode_first=decode[0][1],
                            decode_last=decode[-1][1], samples=samples_, decode_steps=steps,
                            weight_bytes=weight_bytes)
    if steps:
        def total(attr):
            return _interpolated_sum([(x.context, getattr(x, attr)) for x in samples_], first, steps)
        gen.decode_latency_s = total("latency_s")
        gen.decode_energy_j = total("energy_j")
        gen.decode_macs = int(round(total("macs")))
    # the cache at the end holds the prompt and every token fed back (the last generated
    # token never is): after the last decode step, exactly what was traced; a decode step
    # reads the cache it leaves (its context and its own token), interpolated between samples
    gen.deployed_bits = int(bits or 8 * trace.element_bytes)
    gen.kv_cache_bytes = int(read[-1]) if steps else int(trace.prefill_kv * scale)
    reads = [(c, float(b)) for (c, _), b in zip(decode, read)]
    mean_read = (_interpolated_sum(reads, first, steps) / steps if steps
                 else float(read[0]))
    gen.decode_bytes_per_step = weight_bytes + mean_read
    gen.bound = {"prefill": _dominant_bound(gen.prefill), "decode": _dominant_bound(gen.decode_last)}
    gen.how = ((f"the encoder over {prompt_len} tokens and the decoder's start token"
                if trace.encdec else f"prefill of {prompt_len} tokens") +
               f" x {batch} sequence(s) (logits of the last "
               f"position only), then {steps} decode step(s); decode traced at context(s) "
               f"{', '.join(str(c) for c, _ in decode)} and interpolated linearly between "
               "them (exact for the MACs: attention grows linearly with the context; the "
               "weight GEMMs do not change)")
    gen.warnings = sorted({w for p in [gen.prefill] + [p for _, p in decode] for w in p.warnings})
    return gen
