"""Release files: license, citation, changelog, one version everywhere."""

import json
import re

import pytest

import fodlam

from conftest import ROOT, run_cli


def test_license_is_mit_with_a_copyright_line():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and re.search(r"Copyright \(c\) \d{4} \S", text)
    assert "WITHOUT WARRANTY OF ANY KIND" in text
    assert re.search(r"^license = MIT$", (ROOT / "setup.cfg").read_text(), re.M)


def test_citation_cff_is_valid_and_cites_the_measurements():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert cff[key], key
    assert str(cff["version"]) == fodlam.__version__
    refs = cff["references"]
    for ref in refs:
        assert ref["type"] and ref["title"] and ref["authors"], ref
    dois = {str(r.get("doi")) for r in refs}
    assert {"10.1109/JSSC.2016.2616357", "10.1109/ISCA.2016.30"} <= dois   # Eyeriss, EIE


def test_changelog_has_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in text
    assert re.search(rf"^## \[{re.escape(fodlam.__version__)}\] - \d{{4}}-\d\d-\d\d$", text, re.M)


def test_one_version_in_cli_and_json():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fodlam {fodlam.__version__}"
    r = run_cli("run", "--format", "json", "examples/configs/alexnet.json")
    assert json.loads(r.stdout)["fodlam_version"] == fodlam.__version__
    setup = (ROOT / "setup.cfg").read_text()
    assert "version = attr: fodlam._version.__version__" in setup
