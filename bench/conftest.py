"""Benchmarks: `pytest --benchmark-only` from the repository root times them.

A plain `pytest` run collects them too; there each benchmark body runs once,
untimed (a smoke test that also checks the result), and the cases marked
`large` (hundreds of MB) are deselected, so the test suite stays fast.

With `--benchmark-only`, only the benchmarks are collected (the test suite's
other tests are deselected instead of being printed as a page of skips), and
unless --benchmark-columns / --benchmark-name are given, the tables show the
columns that matter for comparing implementations (BENCHMARK_COLUMNS), and
each row is named by what its group title does not already say (in the group
'fused 128x10 float32', `test_fused_forward_backward[128x10-float32-pyce]` is
shown as `pyce`), so that the tables fit a 100-column terminal.
"""
import pytest

# The median (with its ratio to the group's fastest) is the number to compare;
# the interquartile range says how noisy it was; rounds how many timings it is of.
# (A time column with its ratio is up to ~30 characters wide.)
BENCHMARK_COLUMNS = ["median", "iqr", "rounds"]


def _benchmarking(config):
    return config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)


def _given(config, flag):
    """True when the user passed `flag` (on the command line or in PYTEST_ADDOPTS)."""
    return any(arg == flag or arg.startswith(flag + "=") for arg in config.invocation_params.args)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # tryfirst: before pytest-benchmark's own pytest_configure reads the options
    if not config.getoption("benchmark_only", False):
        return
    if not _given(config, "--benchmark-columns"):
        config.option.benchmark_columns = list(BENCHMARK_COLUMNS)
    if not _given(config, "--benchmark-name"):
        config.option.benchmark_name = "short"


def _short_name(name, group):
    """`name`'s parameters that the group title does not repeat ('f[128x10-float32-pyce]',
    'fused 128x10 float32' -> 'pyce'); `name` itself when nothing would be left."""
    if "[" not in name or not group:
        return name
    words = group.split()
    kept = [p for p in name[name.index("[") + 1:-1].split("-") if p not in words]
    return "-".join(kept) or name


@pytest.hookimpl(hookwrapper=True)
def pytest_benchmark_group_stats(config, benchmarks, group_by):
    outcome = yield
    if not config.getoption("benchmark_only", False) or _given(config, "--benchmark-name"):
        return
    for group, rows in outcome.get_result():
        short = [_short_name(row["name"], group) for row in rows]
        if len(set(short)) == len(short):  # only when the rows stay distinguishable
            for row, name in zip(rows, short):
                row["name"] = name


@pytest.fixture(autouse=True)
def _run_once_unless_benchmarking(request):
    config = request.config
    session = getattr(config, "_benchmarksession", None)
    if session is not None and not _benchmarking(config):
        session.disabled = True
    yield


def _deselect(config, items, drop):
    dropped = [item for item in items if drop(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not drop(item)]


def pytest_collection_modifyitems(config, items):
    if config.getoption("benchmark_only", False):
        _deselect(config, items, lambda item: "benchmark" not in getattr(item, "fixturenames", ()))
    elif not _benchmarking(config):
        _deselect(config, items, lambda item: item.get_closest_marker("large") is not None)
