"""The book's offline assets: vendored JavaScript, its licences and pins, and the chart renderer."""
import re
from pathlib import Path

import altair as alt
import yaml

import bindlib.book.plots  # noqa: F401  (enables the renderer)
from bindlib.book.offline import RENDERER, chart_html

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "_vendor"


def book_config() -> dict:
    return yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]["config"]


def test_every_script_the_pages_load_is_vendored_with_its_licence():
    config = book_config()
    assert config["html_static_path"] == ["_vendor"]
    files = [entry[0] if isinstance(entry, list) else entry for entry in config["html_js_files"]]
    files += [config["mathjax_path"], *config["nb_ipywidgets_js"]]
    for name in files:
        assert "://" not in name, f"{name} would need the network"
        assert (VENDOR / name).is_file(), f"_config.yml loads {name}, which is not in _vendor/ (run scripts/vendor_js.sh)"
    for licence in ("vega/LICENSE-vega", "vega/LICENSE-vega-lite", "vega/LICENSE-vega-embed", "mathjax/LICENSE",
                    "widgets/LICENSE-requirejs", "widgets/LICENSE-html-manager"):
        assert (VENDOR / licence).stat().st_size > 500, licence
    assert (VENDOR / "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff").is_file()


def test_no_static_folder_that_would_load_every_script_everywhere():
    # Jupyter Book adds every .js under every static path to every page once a _static/ folder exists.
    assert not (REPO / "_static").exists()


def test_vendored_vega_matches_altair():
    versions = {"vega": alt.VEGA_VERSION, "vega-lite": alt.VEGALITE_VERSION, "vega-embed": alt.VEGAEMBED_VERSION}
    pinned = dict(re.findall(r"(vega(?:-lite|-embed)?) (\d+\.\d+\.\d+)", (VENDOR / "VERSIONS.txt").read_text()))
    for lib, want in versions.items():
        assert pinned[lib].startswith(want), f"altair wants {lib}@{want}, _vendor has {pinned[lib]}: run scripts/vendor_js.sh"
    # Charts saved by altair's own renderer skip their CDN load when VEGA_DEBUG names these versions.
    shim = (VENDOR / "vega-offline.js").read_text()
    for key, want in (("vega_version", alt.VEGA_VERSION), ("vegalite_version", alt.VEGALITE_VERSION),
                      ("vegaembed_version", alt.VEGAEMBED_VERSION)):
        assert f'{key} = "{want}"' in shim, key


def test_renderer_saves_a_picture_and_the_spec():
    assert alt.renderers.active == RENDERER
    chart = alt.Chart(alt.Data(values=[{"x": 1, "y": 2}, {"x": 2, "y": 5}]), title="a </script> title").mark_line().encode(
        x="x:Q", y="y:Q")
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    page = bundle["text/html"]
    assert '<img src="data:image/png;base64,' in page
    assert page.count("</script>") == 1, "the spec must not close the script early"
    assert '"mark": {"type": "line"}' in page or '"mark": "line"' in page
    assert "Error loading script" not in page


def test_renderer_without_a_picture_still_draws():
    page = chart_html({"mark": "point", "data": {"values": []}}, picture=False)
    assert "<img" not in page and "vegaEmbed" in page


def test_colab_cells_take_the_repository_from_the_book_config(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("colab", REPO / "scripts" / "colab.py")
    colab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(colab)
    url = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    assert url in colab.SETUP_CODE and url.removeprefix("https://github.com/") in colab.COLAB_URL
    other = tmp_path / "_config.yml"
    other.write_text("repository:\n  url: https://github.com/someone/fork\n  branch: dev\n")
    assert colab.repository(other) == ("https://github.com/someone/fork", "dev")
    other.write_text("repository:\n  url: not-a-url\n")
    import pytest

    with pytest.raises(SystemExit, match="repository.url"):
        colab.repository(other)


def test_no_chapter_source_loads_a_remote_image():
    """The Colab badge is a styled link: a remote image would be a broken icon in the offline book."""
    import re

    for md in sorted((REPO / "chapters").glob("*.md")):
        remote = re.findall(r"""<img[^>]+src=["']https?://|!\[[^\]]*\]\(https?://""", md.read_text())
        assert not remote, f"{md.name} loads an image from the network: {remote}"
    assert "colab-badge" in (REPO / "_vendor" / "book.css").read_text()


def test_dashes_in_computed_commands_are_not_typeset():
    """Computed sentences name commands ("curve --n-layers 6") as plain text; Sphinx's smartquotes would
    turn their "--" into an en dash unless dashes are left out of its actions."""
    action = book_config().get("smartquotes_action", "qDe")
    assert "d" not in action.lower(), f"smartquotes_action {action!r} typesets '--' as a dash; use 'qe'"
