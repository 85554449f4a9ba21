"""Write a benchmark's report beside its numbers: ``<out>/<stem>.md`` and ``<out>/<stem>.json``."""
from __future__ import annotations

import json
from pathlib import Path

from sdtt_search.machine import describe


def save_run(out: str | Path, stem: str, report: str, numbers: dict) -> None:
    """The markdown ``report`` and the JSON ``numbers`` (with the machine) under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"machine": describe(), **numbers}, indent=2))
    (out / f"{stem}.md").write_text(report + "\n")
