"""bindlib: the helper package of the Seeing-to-Generalize book.

Core (``profiles``, ``task``, ``model``, ``io``, ``packing``, ``evaluate``, ``train``, ``recipes``), then
``vision/`` (pictures and frozen encoders), ``interp/`` (how a model binds) and ``book/`` (charts,
widgets, exercises). Imports go downward only; tests/test_layout.py lists the floors.
"""
__version__ = "0.1.0"
