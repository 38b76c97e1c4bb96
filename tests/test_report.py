"""Reports: a self-contained HTML page checked in a real headless browser, and PNG charts."""

import re
import shutil
import subprocess

import pytest

from conftest import run_cli

pytest.importorskip("matplotlib")
pytest.importorskip("torch")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def render_in_browser(page, tmp_path):
    """Load the page in headless Chromium; return (DOM after scripts ran, console lines)."""
    profile_dir = tmp_path / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile_dir}", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    return r.stdout, console


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    html, png = out / "r.html", out / "r.png"
    r = run_cli("report", "examples.zoo:resnet18", "--input-shape", "1,3,224,224",
                "--html", str(html), "--png", str(png))
    assert r.returncode == 0, r.stderr
    return html, png


def test_html_is_self_contained(report):
    text = report[0].read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text), "the page must not fetch anything"
    assert "data:image/png;base64," in text
    assert "eyeriss-eie-65nm" in text and "eyeriss-jssc2017" in text   # accelerator + provenance
    assert "layer3.1.conv2" in text and "roofline" in text


def test_png_written(report):
    data = report[1].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_html_in_headless_chromium(report, tmp_path):
    import fodlam
    from examples import zoo
    from fodlam.units import format_si

    dom, console = render_in_browser(report[0], tmp_path)
    assert 'data-ready="1"' in dom, "page scripts did not finish cleanly"
    assert not console, console
    total = format_si(fodlam.profile(zoo.resnet18(), (1, 3, 224, 224)).total_energy_j, "J")
    assert f'id="total-energy">{total}<' in dom
    # the check can fail: a page with a script error is caught
    bad = tmp_path / "bad.html"
    bad.write_text(report[0].read_text().replace("</body>", "<script>undefinedFn();</script></body>"))
    dom, console = render_in_browser(bad, tmp_path)
    assert 'data-ready="errors"' in dom or console


def test_profile_plot_and_save_html(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import fodlam
    from examples import zoo

    prof = fodlam.profile(zoo.TwoInputNet(), [(1, 3, 16, 16), (1, 10)])
    fig = prof.plot(top=5)
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "energy (mJ)"
    prof.save_html(tmp_path / "p.html")
    assert "FODLAM report" in (tmp_path / "p.html").read_text()


def test_report_errors(tmp_path):
    r = run_cli("report", "examples.zoo:resnet18", "--input-shape", "1,3,32,32")
    assert r.returncode == 2 and "--html" in r.stderr
    r = run_cli("report", "nothing-here", "--html", str(tmp_path / "x.html"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_report_of_onnx_and_2017_config(tmp_path):
    import torch
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()),
                      (torch.randn(1, 3, 16, 16),), str(onnx_path), dynamo=False)
    for target in (str(onnx_path), "examples/configs/vgg16.json"):
        out = tmp_path / "r.png"
        r = run_cli("report", target, "--png", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_report_screenshot_in_headless_chromium(report, tmp_path):
    """The page as a person sees it: a screenshot in headless Chromium (the label boxes of
    its charts are checked not to intersect in tests/test_people_know.py)."""
    shot = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
           "--virtual-time-budget=5000", f"--screenshot={shot}", report[0].as_uri()]
    subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
