"""report.html of a short pipeline run: self-contained, in pipeline order, one card per explained sample, and
checked in a real browser (Debian's headless chromium): the page loads, every image decodes with a non-zero
size, nothing outside the file is fetched, and the screenshot is not blank.

The browser tests skip only where chromium is missing outside CI; under CI (the CI variable set, as .ci/run
does) a missing chromium is a failure."""
import html
import json
import os
import re
import shutil
import subprocess

import pytest

SECTION_ORDER = ["data", "training", "evaluation", "global", "samples", "shap", "attention", "methods",
                 "misclassified", "counterfactuals", "settings", "versions"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND"]

# Appended to a copy of the page: at load, draw every image onto a small canvas (which needs the decoded pixels;
# headless chromium never settles img.decode() under --dump-dom) and write what the browser saw into
# <pre id="probe">, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener('load', function () {
  var canvas = document.createElement('canvas');
  canvas.width = canvas.height = 8;
  var context = canvas.getContext('2d');
  var images = Array.prototype.map.call(document.images, function (img) {
    var painted = 0, error = null;
    context.clearRect(0, 0, 8, 8);
    try {
      context.drawImage(img, 0, 0, 8, 8);
      var pixels = context.getImageData(0, 0, 8, 8).data;
      for (var k = 3; k < pixels.length; k += 4) { if (pixels[k] > 0) painted++; }
    } catch (e) { error = String(e); }
    return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
            shown: img.getBoundingClientRect().width, painted: painted, error: error};
  });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({
    images: images, title: document.title,
    fetched: performance.getEntriesByType('resource').map(function (e) { return e.name; }),
    sections: Array.prototype.map.call(document.querySelectorAll('section[id]'), function (s) { return s.id; })});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def report(trained_run):
    out, _, _ = trained_run
    return out, (out / "report.html").read_text(encoding="utf-8"), json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it with apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium); the browser tests run in CI")
    return path


def run_chromium(chromium, tmp_path, *args):
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result.stdout


@pytest.mark.slow
def test_report_refers_to_nothing_outside_itself(report):
    _, page, _ = report
    markup = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)
    references = re.findall(r"""\b(?:src|href|srcset|poster|action)\s*=\s*["']?([^"'\s>]+)""", markup)
    outside = [r for r in references if not r.startswith(("data:", "#"))]
    assert not outside, f"report.html refers to {outside[:3]}"
    assert not re.search(r"url\(\s*['\"]?(?!data:)", page) and "@import" not in page and "<link" not in page


@pytest.mark.slow
def test_report_shows_every_figure_in_pipeline_order(report):
    out, page, _ = report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "data_summary.png" in pngs  # drawn by the report from the training table
    missing = [name for name in pngs if f"({name})" not in page]
    assert not missing, f"figures not in report.html: {missing}"
    assert len(re.findall(r"<img\b", page)) >= len(pngs)
    positions = [page.index(f"<section id='{key}'>") for key in SECTION_ORDER]
    assert positions == sorted(positions), "sections are not in the order the pipeline runs"


def section_numbers(page):
    """(the numbers of the report's section headings, the SECTIONS it shows) in page order."""
    from hybrid_explain.pipeline import report as report_module

    shown = [key for key in re.findall(r"<section id='(\w+)'>", page) if key in dict(report_module.SECTIONS)]
    return [int(n) for n in re.findall(r"<h2>(\d+)\. ", page)], shown


@pytest.mark.slow
def test_a_labelled_reports_section_numbers_count_the_sections_shown_without_a_gap(report):
    numbers, shown = section_numbers(report[1])
    assert "predictions" not in shown and numbers == list(range(1, len(shown) + 1))


@pytest.mark.slow
def test_report_has_a_card_per_explained_sample(report):
    _, page, metrics = report
    cards = re.findall(r"<article class='card (ok|wrong)' id='sample-(\d+)'>(.*?)</article>", page, re.S)
    assert len(cards) == len(metrics["explained"]) == len(metrics["explained_rows"])
    for (verdict, i, body), explained in zip(cards, metrics["explained"]):
        assert verdict == ("ok" if explained["true"] == explained["predicted"] else "wrong")
        assert f"test row {explained['row']}" in body and f"{explained['confidence']:.1%}" in body
        assert html.escape(explained["true"]) in body and html.escape(explained["predicted"]) in body
        for kind in ("shap", "gradcam", "attention", "attribution"):
            assert f"({kind}_sample_{i}.png)" in body


@pytest.mark.slow
def test_report_lists_every_setting_and_version(report):
    import train_explain

    _, page, _ = report
    assert all(f"<td>{name}</td>" in page for name in train_explain.CONSTANT_NAMES)
    assert all(f"<td>{name}</td>" in page for name in ("python", "torch", "numpy", "shap", "captum", "scikit-learn"))


@pytest.mark.slow
def test_report_loads_in_a_browser_and_every_image_decodes(report, chromium, tmp_path):
    out, page, _ = report
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_chromium(chromium, tmp_path, "--virtual-time-budget=20000", "--dump-dom", probe_page.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the page did not finish loading in chromium; DOM starts {dom[:300]!r}"
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["title"].startswith("train_explain report")
    assert [key for key in seen["sections"] if key in SECTION_ORDER] == SECTION_ORDER
    images = seen["images"]
    assert len(images) == len(list(out.glob("*.png")))
    broken = [img for img in images if img["error"] or not img["complete"] or not img["width"] or not img["height"]
              or not img["shown"] or img["painted"] < 32]
    assert not broken, f"images that did not decode or show: {broken[:3]}"
    outside = [name for name in seen["fetched"] if not name.startswith("data:")]
    assert not outside, f"the browser fetched {outside}"


@pytest.mark.slow
def test_report_screenshot_is_not_blank(report, chromium, tmp_path):
    from PIL import Image

    out, _, _ = report
    shot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000",
                 (out / "report.html").as_uri())
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20)
        not_white = sum(count for count, rgb in colours if min(rgb) < 235) / (1280 * 2000)
        assert len(colours) > 200, f"only {len(colours)} distinct colours: the page looks blank"
        assert not_white > 0.05, f"only {not_white:.1%} of the screenshot is not white"


@pytest.mark.slow  # three full-size figures of 12 channels (72 panels in one): over 10 s of drawing
def test_figures_stay_legible_with_12_channels_and_1500_steps(tmp_path):
    """Long series are aggregated for drawing only: spikes survive, and the figures keep readable pixel sizes."""
    import numpy as np
    from PIL import Image

    from hybrid_explain.figures import base, strips, summary_figures

    rng = np.random.default_rng(0)
    signal = rng.normal(size=1500)
    signal[777] = 40.0
    steps, values = strips.envelope(signal)
    assert len(steps) <= base.MAX_DRAWN_STEPS and values.max() == 40.0 and values.min() == signal.min()
    x = rng.normal(size=(12, 1500))
    maps = [rng.normal(size=(12, 1500)) for _ in range(8)]
    names = [f"channel_{c}" for c in range(12)]
    strips.attribution_figure(x, maps[:2], ["predicted", "true"], names, "title", "value", tmp_path / "pair.png")
    strips.attribution_grid_figure(x, maps, [f"method {k}" for k in range(8)], [k % 4 != 0 for k in range(8)], names,
                                   "title", tmp_path / "grid.png")
    summary_figures.example_series_figure(np.repeat(x[None], 18, axis=0), np.arange(18) % 9,
                                          [f"class {k}" for k in range(9)], names, tmp_path / "data.png")
    for name in ("pair.png", "grid.png", "data.png"):
        with Image.open(tmp_path / name) as image:
            width, height = image.size
        assert 300 <= width <= 2000 and 200 <= height <= 3000, f"{name} is {width}x{height} px"


@pytest.mark.parametrize("kind", ["constrained layout", "cropped"])
def test_a_figure_drawn_on_a_kept_layout_has_the_pixels_of_one_laid_out_anew(tmp_path, kind):
    """base.save computes a layout once per layout_key: the second sample's figure, drawn on the first one's
    layout, is pixel for pixel the figure laid out for itself; a figure whose tick labels differ gets its own."""
    import numpy as np
    from PIL import Image

    from hybrid_explain.figures import base, strips

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 60))
    names = ["a", "b", "c"]

    def draw(maps, title, path):
        if kind == "cropped":
            strips.attribution_grid_figure(x, maps, ["m0", "m1"], [True, False], names, title, path)
        else:
            strips.attribution_figure(x, maps, ["predicted", "true"], names, title, "value", path)

    first = [rng.normal(size=(3, 60)) for _ in range(2)]
    second = [m[:, ::-1].copy() for m in first]  # other maps on the same colour scale
    base._layouts.clear()
    draw(first, "sample 0: row 3, predicted a", tmp_path / "first.png")
    draw(second, "sample 1: row 17, predicted bb (a longer title)", tmp_path / "kept.png")
    assert len(base._layouts) == 1
    base._layouts.clear()
    draw(second, "sample 1: row 17, predicted bb (a longer title)", tmp_path / "anew.png")
    with Image.open(tmp_path / "kept.png") as kept, Image.open(tmp_path / "anew.png") as anew:
        assert kept.size == anew.size and np.array_equal(np.asarray(kept), np.asarray(anew))
    x = x * 1000  # other value ticks on the signal lines
    draw(second, "sample 1: row 17, predicted bb (a longer title)", tmp_path / "other.png")
    assert len(base._layouts) == (2 if kind != "cropped" else 1)  # the grid draws no value ticks


def test_every_grad_cam_figure_shares_one_colour_scale_up_to_the_largest_value_of_any_sample(monkeypatch):
    import numpy as np
    import torch

    from hybrid_explain.figures import gradcam_attention_figures
    from hybrid_explain.pipeline import stages

    scales = []
    monkeypatch.setattr(gradcam_attention_figures, "attribution_figure", lambda *args, **kwargs: scales.append(kwargs["bound"]))
    samples = stages.Samples(torch.zeros(2, 1, 3), np.arange(2), None, np.zeros(2, dtype=int), np.full((2, 2), 0.5),
                             ["a", "b"], ["c"])
    gradcam_attention_figures.gradcam_figures(np.array([[0.0, 1.0, 0.5], [0.0, 0.1, 0.05]]), samples, lambda name: name)
    assert scales == [1.0, 1.0]
