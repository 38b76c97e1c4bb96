"""A first visit without a stumble (issue 22, items 7-9): dtype on token models, the
summary's node count, the install a user who only profiles needs, and a budgets workflow
that installs what exists."""

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import fodlam  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_a_floating_dtype_on_a_token_model_traces_ids_and_sets_the_width():
    from examples import zoo

    p = fodlam.profile(zoo.gpt2_small(), (1, 16), dtype=torch.bfloat16)
    assert {l.bits for n in p.nodes for l in n.node.layers if l.macs} == {16}
    fp32 = fodlam.profile(zoo.gpt2_small(), (1, 16))
    assert p.total_macs == fp32.total_macs
    conv = fodlam.profile(torch.nn.Conv2d(3, 8, 3), (1, 3, 16, 16), dtype=torch.float16)
    assert {l.bits for n in conv.nodes for l in n.node.layers if l.macs} == {16}


def test_the_summary_counts_one_node_and_its_layers():
    p = fodlam.profile(torch.nn.Linear(768, 768), (128, 768))
    line = str(p).splitlines()[1]
    assert "over 1 node (2 canonical layers)" in line
    assert len(p.by_kind()) == 2


def test_the_readme_gives_the_profiling_only_install():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pip install -e ".[torch,onnx]" torch==2.13.0' in text
    assert re.search(r"about 1 GB", text)
    # and still the two set-up commands CI relies on
    assert text.count("pip install -r requirements-dev.txt -c constraints.txt &&") == 2


def test_the_budgets_workflow_installs_what_exists():
    text = (ROOT / "docs" / "budgets.md").read_text(encoding="utf-8")
    workflow = text[text.index("```yaml"):text.index("```", text.index("```yaml") + 3)]
    assert 'pip install "fodlam[torch,onnx]"' not in workflow          # not on the index
    assert "./.fodlam[torch,onnx]" in workflow and "download.pytorch.org/whl/cpu" in workflow
    wheel_check = (ROOT / ".ci" / "wheel-check").read_text(encoding="utf-8")
    assert "budget-project" in wheel_check and 'fodlam" check' in wheel_check
