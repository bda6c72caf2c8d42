"""Make tests/ importable so test modules can share helpers (`import adversarial`).

pytest runs with --import-mode=importlib (pyproject.toml), which does not put
the test directory on sys.path; this conftest does, for this directory only.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
