"""A checkpoint's fingerprint: which weights a saved result came from.

Zoo models keep their names when they are retrained, so a name cannot tell two
sets of weights apart. ``run`` records the fingerprint of the model it searched
with in ``run_config.json`` and refuses to resume into results of other weights;
``python -m benchmarks.frontier --accuracy-from`` refuses saved accuracy runs of other
weights the same way.

The fingerprint hashes every small file of the checkpoint directory (configs,
tokenizer, sidecars) whole, and of each large file (weights) its size and 16
slices of 64 KiB spread over it: retrained weights differ everywhere, so any
slice tells them apart, and an 8B checkpoint is fingerprinted in milliseconds.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

#: files up to this size are hashed whole
WHOLE_BYTES = 4 << 20
SLICE_BYTES = 64 << 10
SLICES = 16
#: text that describes a model but is not part of it
SKIPPED = {"MODEL.md", "README.md", "metrics.json"}


def checkpoint_fingerprint(directory: str | Path) -> str:
    """16 hex digits identifying the checkpoint in ``directory`` (its files, not its name)."""
    root = Path(directory)
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in SKIPPED):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}|{size}|".encode())
        with path.open("rb") as fh:
            if size <= WHOLE_BYTES:
                digest.update(fh.read())
                continue
            for i in range(SLICES):
                fh.seek((size - SLICE_BYTES) * i // (SLICES - 1))
                digest.update(fh.read(SLICE_BYTES))
    return digest.hexdigest()


def model_fingerprint(name_or_path: str | Path) -> str | None:
    """The fingerprint of a zoo model or checkpoint directory; None for a hub id
    (``hf:org/name``, resolved by the hub's own revision) or anything not on disk."""
    from .zoo import resolve_model_path

    text = str(name_or_path)
    if text.startswith("hf:"):
        local = Path(text[3:]).expanduser()
        return checkpoint_fingerprint(local) if local.is_dir() else None
    try:
        return checkpoint_fingerprint(resolve_model_path(text))
    except ValueError:
        return None
