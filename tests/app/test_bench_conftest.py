"""bench/conftest.py: `pytest --benchmark-only` collects only benchmarks and prints narrow tables.

Runs pytest in a subprocess on a small project made of a copy of
bench/conftest.py and three tests: one benchmark, one benchmark marked
`large`, one plain test.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")

CONFTEST = Path(__file__).resolve().parents[2] / "bench" / "conftest.py"

TESTS = '''
import pytest

@pytest.mark.parametrize("impl", ["pyce", "copy-floor"])
@pytest.mark.parametrize("dtype", ["float32"])
def test_fused_forward_backward(benchmark, dtype, impl):
    benchmark.group = f"fused 128x10 {dtype}"
    benchmark(sum, range(10))

@pytest.mark.large
def test_huge(benchmark):
    benchmark(sum, range(10))

def test_plain():
    assert True
'''


def _pytest(project, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["COLUMNS"] = "100"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p",
                           "no:cacheprovider", "--benchmark-max-time=0.001",
                           "--benchmark-min-rounds=1", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


@pytest.fixture
def project(tmp_path):
    if not CONFTEST.is_file():
        pytest.skip("bench/conftest.py is not next to the tests (tests run from an sdist?)")
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_b.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    large: big\n")
    return tmp_path


def test_benchmark_only_collects_only_benchmarks_and_names_rows_shortly(project):
    out = _pytest(project, "--benchmark-only")
    assert "3 passed, 1 deselected" in out and "skipped" not in out
    table = out[out.index("benchmark 'fused 128x10 float32'"):]
    rows = [line.split()[0] for line in table.splitlines()[3:5]]
    assert sorted(rows) == ["copy-floor", "pyce"]
    assert "Median" in table and "Rounds" in table and "StdDev" not in table
    assert max(len(line) for line in table.splitlines() if "Legend" not in line
               and "Outliers:" not in line) <= 100


def test_plain_pytest_runs_benchmarks_once_and_deselects_large(project):
    out = _pytest(project)
    assert "3 passed, 1 deselected" in out and "skipped" not in out


def test_explicit_columns_win(project):
    out = _pytest(project, "--benchmark-only", "--benchmark-columns=min,max")
    assert "Min" in out and "Median" not in out
