"""Glue a computed value into the page, as MyST-NB's ``glue`` does, also where MyST-NB is not installed (Colab).

The chapter's prose names the value (``{glue:text}`name:.1%```); the number itself comes from the cell. A NumPy
scalar is glued as the plain Python number it holds, so a format such as ``.1%`` applies to it.
"""
from __future__ import annotations

try:
    from myst_nb import glue as _glue
except ImportError:  # the same output format: the value's display data, tagged with its name
    from IPython.core.formatters import format_display_data
    from IPython.display import display as _display

    def _glue(name: str, variable, display: bool = True) -> None:
        bundle, metadata = format_display_data(variable)
        prefix = "" if display else "application/papermill.record/"
        metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
        _display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def glue(name: str, variable, display: bool = True) -> None:
    """Store ``variable`` under ``name`` for the page's ``{glue}`` roles (shown in the cell too with ``display``)."""
    if getattr(variable, "ndim", None) == 0 and hasattr(variable, "item"):
        variable = variable.item()
    _glue(name, variable, display)
