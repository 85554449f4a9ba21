"""Programs that measure (see benchmarks/README.md). Run them from the repository root as
modules, e.g. ``python -m benchmarks.frontier --help``, so that they import each other and
this checkout's ``sdtt_search``."""
