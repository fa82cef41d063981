"""bindlib: the helper package of the Seeing-to-Generalize book.

One module per concept: task (prompts), model (transformer with hook points),
train (curriculum, checkpoints, resume), evaluate (ID/OOD accuracy), io
(atomic files, provenance), recipes (default training configs).
"""
__version__ = "0.1.0"
