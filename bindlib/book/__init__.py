"""The book layer: charts, widgets and exercise checkers. It may import all of bindlib; nothing imports it."""

# Charts are saved with a static picture and drawn with the page's own vega when it has one.
from . import offline as _offline  # noqa: E402,F401
