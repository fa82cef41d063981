"""pytest hooks: one torch thread per test module, and the notebook checks (nbval).

The repository-root conftest.py re-exports these hooks: pytest applies a conftest
only to files below its folder, and the chapters are not below tests/.
"""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Unit tests run in parallel workers on small machines: one thread each avoids oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _fresh_run_state():
    """A test that runs a CLI command with --allow-dirty must not leave its diff to the next test's writes."""
    from bindlib.core import io

    io.RUN.update(commit=None, diff=None)
    yield
    io.RUN.update(commit=None, diff=None)


# Outputs that legitimately change from run to run, so nbval must not compare them:
# altair's HTML embeds a fresh random element id, widget views carry fresh model ids,
# JavaScript outputs come with widgets and charts, and stderr holds warnings and progress bars.
VOLATILE_OUTPUT_KEYS = (
    "text/html",
    "application/javascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
    "stderr",
)


def pytest_collectstart(collector):
    """Extend nbval's per-notebook skip list (IPyNbFile.skip_compare, nbval 0.11)."""
    path = getattr(collector, "path", None)
    if path is None or path.suffix != ".ipynb" or not hasattr(collector, "skip_compare"):
        return
    missing = tuple(key for key in VOLATILE_OUTPUT_KEYS if key not in collector.skip_compare)
    collector.skip_compare += missing
