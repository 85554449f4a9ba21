"""``python -m benchmarks.frontier``: see the package docstring and ``--help``."""
from .cli import main

main()
