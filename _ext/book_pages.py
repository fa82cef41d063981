"""Small fixes to the built pages: a local Sphinx extension, named in _config.yml.

Jupyter Book 1.0.4 registers the inline configuration scripts of sphinx-thebe and
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


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
