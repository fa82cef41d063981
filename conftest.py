"""Root conftest: makes the nbval hooks in tests/conftest.py apply to chapters/*.ipynb too.

pytest only applies a conftest.py to files in or below its own folder.
"""
from tests.conftest import pytest_collectstart  # noqa: F401
