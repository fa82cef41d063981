"""An altair renderer that works offline: a static picture first, the interactive chart on top.

``import bindlib.book.plots`` (which every chart helper imports) enables it (``alt.renderers.enable("bindlib")``).  Each chart is saved as
HTML holding

- a PNG of the chart (made offline by vl-convert, when it is installed), shown as it is when no
  JavaScript or no vega library can be had;
- a script that draws the interactive chart in its place with the vega-embed already on the page
  (the built book loads its vendored copy on every page, see _config.yml), and otherwise, in
  Jupyter or Colab, fetches vega from the CDN altair uses; offline it keeps the picture.

Unlike altair's own html renderer it never writes a red "Error loading script" into the page.
"""
from __future__ import annotations

import base64
import html
import io
import json
import uuid

import altair as alt

RENDERER = "bindlib"
CDN = "https://cdn.jsdelivr.net/npm/"

_SCRIPT = """\
(function (spec, opt) {
  var el = document.getElementById(%(id)s);
  var picture = el.firstElementChild;
  function draw(vegaEmbed) {
    if (picture) el.removeChild(picture);
    vegaEmbed(el, spec, opt).catch(function (err) {
      console.warn("chart shown as a picture:", err);
      el.innerHTML = "";
      if (picture) el.appendChild(picture);
    });
  }
  function keepPicture() { console.warn("vega could not be loaded: the chart stays a static picture"); }
  if (typeof window.vegaEmbed === "function") { draw(window.vegaEmbed); return; }
  var libs = %(libs)s;
  if (typeof define === "function" && define.amd) {
    var paths = {};
    Object.keys(libs).forEach(function (name) { paths[name] = libs[name] + "?noext"; });
    requirejs.config({paths: paths});
    require(["vega-embed"], draw, keepPicture);
    return;
  }
  var names = Object.keys(libs);
  (function load(i) {
    if (i === names.length) { draw(window.vegaEmbed); return; }
    var s = document.createElement("script");
    s.src = libs[names[i]];
    s.onload = function () { load(i + 1); };
    s.onerror = keepPicture;
    document.head.appendChild(s);
  })(0);
})(%(spec)s, %(opt)s);"""


def static_png(spec: dict, scale: float = 1.0) -> bytes | None:
    """The chart as PNG bytes via vl-convert (offline), or None when vl-convert is missing or fails."""
    try:
        import vl_convert as vlc
    except ImportError:
        return None
    version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # 'v6.4.1' -> 'v6_4'
    try:
        png = vlc.vegalite_to_png(spec, vl_version=version, scale=scale)
    except Exception:  # a spec vl-convert cannot draw still gets its interactive chart
        return None
    # A palette of 128 colours makes the saved notebook about 7x smaller and looks the same.
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128).save(out, "PNG", optimize=True)
    return out.getvalue()


def chart_html(spec: dict, embed_options: dict | None = None, picture: bool = True) -> str:
    """The HTML of one chart: a fallback picture inside a div, and the script that draws the chart."""
    chart_id = f"bindlib-chart-{uuid.uuid4().hex[:12]}"
    title = spec.get("title", "")
    if isinstance(title, dict):
        title = title.get("text", "")
    if isinstance(title, list):
        title = " ".join(map(str, title))
    png = static_png(spec) if picture else None
    inner = ""
    if png is not None:
        alt_text = html.escape(f"{title or 'chart'} (static picture)", quote=True)
        inner = (f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{alt_text}" '
                 f'style="max-width:100%;height:auto">')
    libs = {"vega": f"{CDN}vega@{alt.VEGA_VERSION}", "vega-lite": f"{CDN}vega-lite@{alt.VEGALITE_VERSION}",
            "vega-embed": f"{CDN}vega-embed@{alt.VEGAEMBED_VERSION}"}
    options = {"mode": "vega-lite", **(embed_options or {})}
    # "</" inside a script would end it early: escape it in the JSON.
    script = _SCRIPT % {"id": json.dumps(chart_id), "libs": json.dumps(libs),
                        "spec": json.dumps(spec).replace("</", "<\\/"), "opt": json.dumps(options)}
    return (f'<div class="bindlib-chart" id="{chart_id}" style="max-width:100%;overflow-x:auto">{inner}</div>\n'
            f'<script type="text/javascript">\n{script}\n</script>')


def _renderer(spec: dict, **kwargs) -> dict:
    embed_options = kwargs.get("embed_options") or {}
    # No text/plain: IPython adds the chart's own repr ("alt.Chart(...)"), which nbval compares.
    return {"text/html": chart_html(spec, embed_options)}


def enable() -> None:
    """Register and enable the renderer (idempotent)."""
    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, _renderer)
    alt.renderers.enable(RENDERER)


enable()
