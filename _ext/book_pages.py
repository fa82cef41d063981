"""Small fixes to the built pages: a local Sphinx extension, named in _config.yml.

1. Progress bars leave one line.  A chapter executed headless stores each tqdm refresh as its
   own stream output, each starting with a carriage return.  myst-nb (nb_merge_streams) joins
   them with newlines, so every refresh became a line of its own; join them as a terminal
   would (raw text, carriage returns kept), so only the bar's last state is shown.
2. Jupyter Book 1.0.4 registers the inline configuration scripts of sphinx-thebe and
sphinx-togglebutton twice on every page; the second ``const THEBE_JS_URL`` is a
JavaScript SyntaxError in every reader's console.  Keep the first copy of each script.
"""


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (getattr(script, "filename", str(script)) or "",
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def _join_streams_raw(outputs):
    """All stream outputs of one name, concatenated as raw text at the first one's place (as myst-nb does,
    but without a newline between them, so a carriage return still rewrites its line)."""
    joined, first = [], {}
    for output in outputs:
        if output.get("output_type") == "stream":
            name = output.get("name")
            if name in first:
                first[name]["text"] += output.get("text", "")
                continue
            output = dict(output) if not hasattr(output, "copy") else output.copy()
            first[name] = output
        joined.append(output)
    return joined


def _patch_stream_merging():
    from myst_nb.core import render

    original = getattr(render.coalesce_streams, "__wrapped__", render.coalesce_streams)

    def coalesce_streams(outputs):
        return original(_join_streams_raw(outputs or []))

    coalesce_streams.__wrapped__ = original
    render.coalesce_streams = coalesce_streams


def setup(app):
    _patch_stream_merging()
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
