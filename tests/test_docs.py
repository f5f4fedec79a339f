"""The documentation cannot drift from the code: the configuration reference is generated from the constants block."""
import importlib.util

from conftest import ROOT


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_config", ROOT / "docs" / "gen_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_page_is_what_the_constants_block_generates_now():
    generated = load_generator().render()
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == generated, "docs/configuration.md is out of date: run python docs/gen_config.py"


def test_the_configuration_page_lists_every_constant_with_its_default():
    import train_explain

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in train_explain.CONSTANT_NAMES:
        assert f"| `--{name.lower()}` | `{getattr(train_explain, name)!r}` |" in page


def test_the_readme_stays_a_first_minute_read():
    words = len((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert words <= 2_800, f"README.md has {words:,} words; move detail into docs/ (about 2,500 at most)"
