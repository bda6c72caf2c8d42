"""Benchmarks: `pytest --benchmark-only` from the repository root times them.

A plain `pytest` run collects them too; there each benchmark body runs once,
untimed (a smoke test that also checks the result), and the cases marked
`large` (hundreds of MB) are deselected, so the test suite stays fast.
"""
import pytest


@pytest.fixture(autouse=True)
def _run_once_unless_benchmarking(request):
    config = request.config
    session = getattr(config, "_benchmarksession", None)
    if session is not None and not config.getoption("benchmark_only") \
            and not config.getoption("benchmark_enable"):
        session.disabled = True
    yield


def pytest_collection_modifyitems(config, items):
    if config.getoption("benchmark_only") or config.getoption("benchmark_enable"):
        return
    large = [item for item in items if item.get_closest_marker("large")]
    if large:
        config.hook.pytest_deselected(items=large)
        items[:] = [item for item in items if not item.get_closest_marker("large")]
