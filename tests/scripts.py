"""Import a repository script (examples/) that is not a package module."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str):
    """The module ``<repo>/<folder>/<name>.py``, executed once per call."""
    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
