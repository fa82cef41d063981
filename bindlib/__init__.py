"""bindlib: the helper package of the Seeing-to-Generalize book.

Its folders are its floors, read bottom up: ``core/`` (the task, the transformer, accuracy, results files),
``training/`` (the curriculum and the loop, text only), ``vision/`` (pictures, frozen encoders, the image steps
of training), ``interp/`` (how a model binds), ``pretrained/`` (the same on released models), ``experiments/``
(recipes, regimes, image-stage recipes, the headline table) and ``book/`` (charts, widgets, exercises); the
command line (``cli``, ``__main__``) sits on top. A module imports only from its own folder or a lower one
(tests/test_layout.py).
"""
__version__ = "0.1.0"
