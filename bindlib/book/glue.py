"""Glue a computed value into the page, as MyST-NB's ``glue`` does, also where MyST-NB is not installed (Colab).

The chapter's prose names the value (``{glue:text}`name:.1%```); the number itself comes from the cell.
"""
from __future__ import annotations

try:
    from myst_nb import glue  # noqa: F401
except ImportError:  # the same output format: the value's display data, tagged with its name
    from IPython.core.formatters import format_display_data
    from IPython.display import display as _display

    def glue(name: str, variable, display: bool = True) -> None:
        bundle, metadata = format_display_data(variable)
        prefix = "" if display else "application/papermill.record/"
        metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
        _display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
