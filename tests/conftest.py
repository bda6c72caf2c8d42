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
