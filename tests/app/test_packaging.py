"""What the checkout promises a new user: license, install hints, ignored output folders.

These read the repository's files (README.md, pyproject.toml, LICENSE,
.gitignore) next to the tests; they skip when the tests run without the
checkout around them.
"""
import re
import sys
from importlib.metadata import metadata
from pathlib import Path

import pytest

from pyce.app import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def root():
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not run from a pyce checkout")
    return ROOT


def _pyproject(root):
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib
    return tomllib.loads((root / "pyproject.toml").read_text())


def test_license_file_and_metadata_agree(root):
    assert (root / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert "the pyce developers" in (root / "LICENSE").read_text()
    assert _pyproject(root)["project"]["license"] == "BSD-3-Clause"
    assert metadata("pyce")["License-Expression"] == "BSD-3-Clause"


def test_numpy_is_the_only_hard_dependency_and_the_readme_installs_the_plots(root):
    project = _pyproject(root)["project"]
    assert [d.split(">")[0] for d in project["dependencies"]] == ["numpy"]
    extras = project["optional-dependencies"]
    assert any(d.startswith("matplotlib") for d in extras["plot"])
    assert any(d.startswith("torch") for d in extras["torch"])
    assert not any(d.startswith("torch") for d in extras["test"])  # opt-in, never by default
    readme = (root / "README.md").read_text()
    assert 'pip install ".[plot]" && pyce train' in readme
    assert 'pip install ".[test,torch]"' in readme


def test_no_hint_points_at_the_index_under_the_name_pyce(root):
    # 'pyce' on the package index is an unrelated project
    offenders = []
    for path in [root / "README.md", *root.glob("pyce/**/*.py"), *root.glob("bench/*.py"),
                 root / ".ci" / "run", root / "pyproject.toml"]:
        if re.search(r"pip install [\"']?pyce\b", path.read_text()):
            offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_default_output_folders_are_ignored(root):
    ignored = (root / ".gitignore").read_text().split()
    for folder in cli.DEFAULT_OUT.values():
        assert f"/{folder}/" in ignored
    readme = (root / "README.md").read_text()
    assert "pyce-reductions/reductions.png" in readme and "(default `pyce-run/`)" in readme
