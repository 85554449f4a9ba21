"""The top-level names the ``sdtt-search`` distribution installs, and a check that no other
installed distribution provides one of them.

Besides ``sdtt_search`` the distribution installs ``tasks``, ``distill`` and ``configs`` as
top-level packages: the documented commands and imports (``python -m distill.sdtt``,
``from tasks import load_task``) use those names. They are generic, so another
distribution could install a package of the same name; Python then imports whichever
comes first on the path, and pip does not warn. ``name_clashes`` reads every installed
distribution's metadata for that (docs/architecture.md, "Installed names")::

    python -m sdtt_search.distribution     # exit status 1 and one line per clash
"""
from __future__ import annotations

import re
import sys
from importlib.metadata import packages_distributions

DISTRIBUTION = "sdtt-search"
#: the top-level packages of pyproject.toml's [tool.setuptools.packages.find]
TOP_LEVEL = ("sdtt_search", "tasks", "distill", "configs")


def normalize(name: str) -> str:
    """A distribution name in its normal form (PEP 503: ``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def name_clashes() -> dict[str, list[str]]:
    """Each of ``TOP_LEVEL`` that another installed distribution provides too -> those
    distributions (by their installed metadata); {} when there is none."""
    providers = packages_distributions()
    clashes = {}
    for name in TOP_LEVEL:
        others = sorted({d for d in providers.get(name, []) if normalize(d) != DISTRIBUTION})
        if others:
            clashes[name] = others
    return clashes


def main() -> int:
    clashes = name_clashes()
    for name, others in clashes.items():
        print(f"top-level package {name!r} of {DISTRIBUTION} is also installed by {', '.join(others)}: "
              f"uninstall one of them or use separate environments", file=sys.stderr)
    return 1 if clashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
