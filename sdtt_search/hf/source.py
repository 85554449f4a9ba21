"""Where a ``hf:`` model lives: a local directory or a hub id (with an optional ``@revision``).

``hf:GSAI-ML/LLaDA-8B-Instruct``, ``hf:jdeschena/sdtt@baselines_kld_step_70000`` and
``hf:/path/to/dir`` are all valid. Files are read from the directory, or fetched
(and cached) with ``huggingface_hub``; a file that cannot be had is a one-line error.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PREFIX = "hf:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HFSource:
    """A parsed ``hf:`` spec.

    Attributes:
        spec: the text the user gave (with ``hf:``), for messages.
        location: a local directory path or a hub id ("owner/name").
        revision: hub branch / tag / commit (None: the default branch).
        local: True for a local directory.
    """

    spec: str
    location: str
    revision: str | None
    local: bool

    @property
    def path(self) -> Path:
        """The local directory (only for ``local`` sources)."""
        return Path(self.location).expanduser()

    def file(self, filename: str, *, required: bool = True) -> Path | None:
        """Path of ``filename`` in the model (downloaded for hub ids).

        Returns None when the file does not exist and ``required`` is False;
        otherwise a missing or unreachable file is a one-line ``ValueError``.
        """
        if self.local:
            path = self.path / filename
            if path.is_file():
                return path
            if required:
                raise ValueError(f"{self.spec}: {path} is missing")
            return None
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.location, filename, revision=self.revision))
        except _missing_file_error():
            if required:
                raise ValueError(f"{self.spec}: the hub repository has no {filename}") from None
            return None
        except Exception as err:  # noqa: BLE001 - network, auth, unknown repo: all one line
            raise ValueError(f"{self.spec}: could not fetch {filename} from the Hugging Face hub ({_first_line(err)}); "
                             "check the id and revision, the network (HF_HUB_OFFLINE), or pass a local directory") from None

    def load_location(self) -> str:
        """What to give ``from_pretrained``: the directory or the hub id."""
        return str(self.path) if self.local else self.location


def parse_source(spec: str) -> HFSource:
    """``"hf:<dir or owner/name[@revision]>"`` -> ``HFSource``; a bad spec is a one-line ``ValueError``."""
    text = str(spec)
    body = text.removeprefix(PREFIX)
    if not body:
        raise ValueError(f"{text!r}: name a hub id or a directory after hf:, e.g. hf:GSAI-ML/LLaDA-8B-Instruct")
    if Path(body).expanduser().is_dir():
        return HFSource(spec=text, location=body, revision=None, local=True)
    repo, _, revision = body.partition("@")
    if not _HUB_ID.match(repo) or (_ and not revision):
        raise ValueError(f"{text!r} is neither a local directory nor a hub id of the form owner/name[@revision]")
    return HFSource(spec=text, location=repo, revision=revision or None, local=False)


def read_config(source: HFSource) -> dict:
    """The model's config.json as a dict (read as JSON: no model code runs)."""
    path = source.file("config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{source.spec}: config.json is not valid JSON ({type(err).__name__})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{source.spec}: config.json is not a JSON object")  # noqa: TRY004 - a file error
    return config


def _missing_file_error() -> type[BaseException]:
    """The hub's "no such file in this repository" error (not the offline "not cached" one)."""
    from huggingface_hub import errors

    return getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0][:160] if lines else type(err).__name__)
