"""Models shipped inside the package (checkpoint directories next to this file).

Each entry is a directory with ``config.json``, ``model.safetensors``,
``tokenizer.json`` and a ``MODEL.md`` card saying how it was trained and what it
scores. ``resolve_model_path`` turns a zoo name or a local directory into a path.
"""
from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent


def available_models() -> list[str]:
    """Names of the shipped checkpoints."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A zoo name or an existing checkpoint directory -> its directory.

    Raises a one-line ``ValueError`` naming the zoo models when neither matches.
    """
    path = Path(name_or_path).expanduser()
    try:
        if path.is_dir():
            return path
        if (ZOO_DIR / str(name_or_path) / "config.json").is_file():
            return ZOO_DIR / str(name_or_path)
    except OSError:  # a name no file system takes (too long, a NUL): not a directory, not a zoo name
        pass
    names = ", ".join(available_models()) or "none shipped yet"
    raise ValueError(f"model {str(name_or_path)!r} is neither a checkpoint directory nor a zoo model (zoo: {names})")


# The student each task runs with when the command line names no model.
DEFAULT_MODELS = {
    "countdown": "countdown-cd3-wide-sdtt-8",
    "gsm8k": "gsm8k-sdtt",
    "sudoku": "sudoku4-sdtt-4",
    "wordproblems": "wordproblems-sdtt-37",
}


def default_model_for(task_name: str) -> str:
    """Zoo name of the task's default student; a one-line error if none is shipped."""
    name = DEFAULT_MODELS.get(task_name)
    if name is None or not (ZOO_DIR / name / "config.json").is_file():
        raise ValueError(f"no model is shipped for task {task_name!r} yet; pass model=<checkpoint dir or zoo name>")
    return name
