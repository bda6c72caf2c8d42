"""Make the shared test helpers importable (`import adversarial`, in tests/loss/).

pytest runs with --import-mode=importlib (pyproject.toml), which does not put
test directories on sys.path; this conftest puts tests/ and tests/loss/ there,
so every test file, in any subfolder, can import the helpers.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (_HERE, os.path.join(_HERE, "loss")):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def pytest_terminal_summary(terminalreporter):
    """At the end of the run (the skips are listed by -rfEs in addopts): how to run the torch comparisons."""
    skipped = terminalreporter.stats.get("skipped", [])
    torch_skips = sum(1 for report in skipped if "could not import 'torch'" in str(report.longrepr))
    if torch_skips:
        terminalreporter.write_line(
            f"{torch_skips} of the skips are torch comparisons (torch is not installed); "
            f"to run them: pip install \".[test,torch]\" (README, \"Tests\")")
