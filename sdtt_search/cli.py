"""Hydra composition for the command-line programs, with one-line errors.

The programs compose their config with Hydra's compose API rather than
``@hydra.main`` so that every bad override (unknown key, unknown config group
option, bad value) ends as one line on stderr and exit status 2.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def config_dir() -> Path:
    """The ``configs/`` directory (next to the packages in a checkout or a wheel)."""
    if CONFIG_DIR.is_dir():
        return CONFIG_DIR
    import configs  # installed as a package

    return Path(configs.__file__).resolve().parent


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    missing = re.search(r"Could not find '(\w+)/(\S+?)'", text)
    if missing:
        group, name = missing.groups()
        return f"unknown {group} {name!r}; available: {', '.join(group_options(group))}"
    key = re.search(r"Key '([^']+)' is not in struct", text) or re.search(r"Could not override '([^']+)'", text)
    if key:
        return f"unknown option {key.group(1)!r}; see configs/ for the options (add new keys with +key=value)"
    return " ".join(text.split())


def _shadowed_keys(config_name: str) -> set[str]:
    """Plain top-level keys of a config that share their name with a config group.

    ``run.yaml`` has ``model: <zoo name or directory>`` while ``configs/model/`` is
    the group of model sizes used by ``pretrain``; Hydra would read ``model=x`` as a
    group choice, so such overrides are applied as plain values after composing.
    """
    primary = OmegaConf.load(config_dir() / f"{config_name}.yaml")
    groups_in_defaults = set()
    for entry in primary.get("defaults", []) or []:
        if isinstance(entry, str):
            groups_in_defaults.add(entry.split("/")[0])
        else:
            groups_in_defaults.update(str(k).lstrip("+") for k in entry)
    return {k for k in primary if k != "defaults" and k not in groups_in_defaults and (config_dir() / k).is_dir()}


def compose(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with command-line overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    shadowed = _shadowed_keys(config_name)
    plain, rest = {}, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key in shadowed:
            plain[key] = OmegaConf.create({"v": value}).v if value else None
        else:
            rest.append(item)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=rest)
    except Exception as err:  # noqa: BLE001 - hydra raises several types; all become one line
        raise ValueError(_one_line(err)) from None
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    for key, value in plain.items():
        cfg[key] = None if value in ("null", "None") else value
    return cfg


def cli_main(run: Callable[[DictConfig], object], config_name: str, argv: Sequence[str] | None = None) -> int:
    """Compose, run, and turn user errors into one line on stderr (exit 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(help_text(config_name))
        return 0
    try:
        cfg = compose(config_name, argv)
        run(cfg)
    except (ValueError, RuntimeError, FileNotFoundError, KeyError) as err:
        if os.environ.get("SDTT_DEBUG"):
            raise
        message = _one_line(err) if not isinstance(err, KeyError) else f"missing key {err}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


def help_text(config_name: str) -> str:
    """``--help``: a usage line and each top-level option of ``configs/<config_name>.yaml``
    with its default and the comment beside it (the YAML is the one source of both)."""
    lines = (config_dir() / f"{config_name}.yaml").read_text().splitlines()
    usage = next((line.lstrip("# ").strip() for line in lines if line.startswith("# python -m")), "")
    rows = []
    for line in lines:
        m = re.match(r"^([A-Za-z_][\w]*):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if m and m.group(1) != "defaults":
            key, value, comment = m.group(1), m.group(2), m.group(3) or ""
            option = f"{key}.<key>=..." if not value or value.startswith("&") else f"{key}={value}"
            rows.append(f"  {option:<30} {comment}")
    primary = OmegaConf.load(config_dir() / f"{config_name}.yaml")
    groups = []
    for entry in primary.get("defaults", []) or []:
        names = [entry] if isinstance(entry, str) else [str(k) for k in entry]
        groups += [name.lstrip("+").split("/")[0] for name in names if name != "_self_"]
    group_lines = [f"  {g}=<{'|'.join(group_options(g))}>" for g in groups if group_options(g)]
    return "\n".join([f"usage: {usage or 'python -m ... [key=value ...]'}", "",
                      "options (key=default  meaning; nested keys as key.sub=value):", *rows, "",
                      "config groups:", *group_lines, "",
                      f"Every option and its default: configs/{config_name}.yaml. Errors are one line on stderr, exit 2."])


def task_from_config(task_cfg) -> object:
    """``tasks.load_task`` from a ``task`` config group entry (name, options, path)."""
    from tasks import load_task

    cfg = OmegaConf.to_container(task_cfg, resolve=True) if isinstance(task_cfg, DictConfig) else dict(task_cfg)
    options = dict(cfg.get("options") or {})
    if cfg.get("path"):
        options["path"] = cfg["path"]
    return load_task(cfg["name"], **options)
