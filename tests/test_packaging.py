"""The package: pyproject.toml lists every module and the runtime requirements, one version number everywhere."""
import json
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

tomllib = pytest.importorskip("tomllib")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_top_level_module_is_installed():
    assert sorted(PYPROJECT["tool"]["setuptools"]["py-modules"]) == sorted(p.stem for p in ROOT.glob("*.py"))


def test_the_runtime_requirements_are_requirements_txt_without_the_test_tools():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    runtime = [line for line in lines if line and not line.startswith("pytest")]
    assert PYPROJECT["project"]["dependencies"] == runtime
    assert any(d.startswith("pytest") for d in PYPROJECT["project"]["optional-dependencies"]["dev"])


def test_version_prints_the_one_version_before_torch_is_imported():
    from hybrid_explain.version import __version__

    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    result = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "train_explain.py"), "--version"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"train_explain {__version__}"
    assert not re.search(r"\|\s+torch$", result.stderr, re.M)  # -X importtime lists every import on stderr


@pytest.mark.slow
def test_metrics_and_the_checkpoint_carry_the_version_and_an_older_checkpoint_still_loads(trained_run, tmp_path):
    from hybrid_explain.checkpoint import load_model
    from hybrid_explain.version import __version__

    out, _, _ = trained_run
    assert json.loads((out / "metrics.json").read_text())["version"] == __version__
    checkpoint = torch.load(out / "saved_model_hybrid_explained.pth", weights_only=True)
    assert checkpoint["version"] == __version__
    del checkpoint["version"]  # as written before 0.9.0
    torch.save(checkpoint, tmp_path / "old.pth")
    model, loaded = load_model(tmp_path / "old.pth")
    assert "version" not in loaded and not model.training


def test_the_docs_requirements_are_the_docs_extra():
    lines = (ROOT / "docs" / "requirements.txt").read_text().split()
    assert lines == PYPROJECT["project"]["optional-dependencies"]["docs"]


def test_the_citation_names_the_one_version():
    from hybrid_explain.version import __version__

    assert re.search(rf"^version: {re.escape(__version__)}$", (ROOT / "CITATION.cff").read_text(), re.M)
