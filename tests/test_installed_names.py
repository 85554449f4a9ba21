"""The installed top-level names (``sdtt_search``, ``tasks``, ``distill``, ``configs``)
are this project's and nobody else's (docs/architecture.md, "Installed names")."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sdtt_search import distribution

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_installs_exactly_the_listed_top_level_names():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] == distribution.DISTRIBUTION
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(pattern.rstrip("*") for pattern in include) == sorted(distribution.TOP_LEVEL)


def test_no_other_installed_distribution_provides_our_top_level_names():
    assert distribution.name_clashes() == {}, ("another installed distribution provides a top-level package of "
                                               f"sdtt-search: {distribution.name_clashes()}")


@pytest.mark.parametrize("name", distribution.TOP_LEVEL)
def test_each_name_imports_from_where_sdtt_search_does(name):
    """A checkout, an editable install or a wheel: the four packages lie side by side; one
    found elsewhere is another distribution's, shadowing ours."""
    home = Path(distribution.__file__).resolve().parent.parent
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).resolve().parent == home / name, f"{name} comes from {spec.origin}, not {home / name}"


def test_a_clash_is_found_and_reported(tmp_path, monkeypatch):
    info = tmp_path / "other_tasks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other_tasks\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("tasks\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert distribution.name_clashes() == {"tasks": ["other_tasks"]}
    assert distribution.main() == 1


def test_the_check_runs_from_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "sdtt_search.distribution"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
