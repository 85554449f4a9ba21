"""Connecting to Ray: join a running cluster or start a private, loopback-only one.

``connect(None)`` starts a local cluster that nothing outside this machine can
reach: every listening TCP socket of the processes it starts (gcs_server,
raylet and its object manager, the core-worker gRPC servers of the driver and
of every worker, the runtime-env agent and, when present, the dashboard agent,
its metrics exporter and the dashboard) is bound to 127.0.0.1.

How (Ray 2.60): every one of those servers binds the *node IP address*, or
all interfaces when that address is not a loopback one. So the fix is to make
the node IP 127.0.0.1. ``ray.init(_node_ip_address="127.0.0.1")`` alone does
not do it: ``ray.init`` passes the value through
``services.resolve_ip_for_localhost``, which deliberately replaces a loopback
address by the machine's external address (so that other nodes could join)
unless ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` is false -- the
setting that ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` gives, and Ray's default
on macOS/Windows, where a single-node cluster uses the loopback address. That
constant is read when ``ray`` is imported, so it is switched off only for the
duration of the ``ray.init`` call here; the child processes are given
``--node-ip-address=127.0.0.1`` explicitly and need nothing else. We do not
export the environment variable: it would leak into a later ``connect("auto")``
in the same process and make it advertise 127.0.0.1 to a multi-node cluster.

Token authentication stays as Ray sets it up for a new local cluster
(``RAY_AUTH_MODE=token`` when the variable is unset; the token lives in
``~/.ray/auth_token``). No dashboard is started unless ``dashboard=True``
(and then on 127.0.0.1 only; it needs ``ray[default]``).

``connect`` reuses an existing connection (``ray.is_initialized()``), so one
cluster serves a whole run, and a pytest session can start it once in a
fixture and every ``run_on_ray`` call reuses it.

A private cluster's health checks run every second and a node that misses
:data:`HEALTH_CHECK_FAILURES` of them is declared dead (Ray's defaults take about
a minute), so a lost raylet is noticed within seconds (``alive``). ``shutdown``
removes the session directory a private cluster left in Ray's temp folder.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

LOOPBACK = "127.0.0.1"
HEALTH_CHECK_PERIOD_MS = 1000
HEALTH_CHECK_FAILURES = 5

logger = logging.getLogger(__name__)

_started_here = False  # whether the live connection is a private cluster that connect() started
_session_dir: Path | None = None  # the private cluster's session directory, removed by shutdown()


def connect(address: str | None, *, dashboard: bool = False, num_cpus: int | None = None) -> None:
    """Connect this process to Ray (no-op when it already is).

    Args:
        address: ``None`` starts a private single-node cluster bound to the
            loopback interface only; ``"auto"`` or ``"host:port"`` joins a
            running cluster (its own network settings then apply).
        dashboard: start the dashboard (private cluster only; 127.0.0.1).
        num_cpus: CPUs the private cluster offers (default: all cores).
    """
    global _started_here, _session_dir
    import ray

    if ray.is_initialized():
        return
    if address:
        if num_cpus is not None:
            logger.warning("ray.num_cpus=%s is ignored when joining the cluster at %s", num_cpus, address)
        try:
            ray.init(address=str(address), logging_level=logging.WARNING, log_to_driver=True)
        except ConnectionError as err:
            raise RuntimeError(f"could not connect to the Ray cluster at {address!r}: {' '.join(str(err).split())}") from None
        _started_here = False
        return

    if (os.environ.get("RAY_AUTH_MODE") or "token").lower() != "token":
        logger.warning("RAY_AUTH_MODE=%s: the private Ray cluster starts without token authentication",
                       os.environ["RAY_AUTH_MODE"])
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # keep _node_ip_address=127.0.0.1 as given (see module docstring)
    try:
        ray.init(
            address="local",  # always a new cluster, even if RAY_ADDRESS is set
            _node_ip_address=LOOPBACK,
            include_dashboard=bool(dashboard),
            dashboard_host=LOOPBACK,
            num_cpus=num_cpus,
            logging_level=logging.WARNING,
            _system_config={"health_check_period_ms": HEALTH_CHECK_PERIOD_MS,
                            "health_check_failure_threshold": HEALTH_CHECK_FAILURES},
        )
    except Exception as err:  # noqa: BLE001 - ray raises bare Exception for a missing dashboard
        if dashboard and "missing packages" in str(err):
            raise RuntimeError("ray.dashboard=true needs the dashboard packages: pip install 'ray[default]'") from None
        raise
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
    _started_here = True
    _session_dir = _current_session_dir()
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # a Ray upgrade changed the mechanism: refuse to run exposed
        shutdown()
        raise RuntimeError(f"the private Ray cluster came up on {node_ip}, not {LOOPBACK}; refusing to run it")


def started_here() -> bool:
    """True when the current Ray connection is a private cluster started by ``connect``."""
    import ray

    return _started_here and ray.is_initialized()


def _current_session_dir() -> Path | None:
    try:
        from ray._private import worker

        node = worker._global_node
        return Path(node.get_session_dir_path()) if node is not None else None
    except Exception:  # noqa: BLE001 - a private Ray API: without it the directory is left, nothing else
        return None


def alive(timeout_s: float = 30.0) -> bool:
    """Whether the cluster still has a live node, asked in a thread that gives up after
    ``timeout_s`` (a lost GCS would otherwise block the question itself)."""
    import ray

    answer: list[bool] = []

    def ask() -> None:
        try:
            answer.append(any(node.get("Alive") for node in ray.nodes()))
        except Exception:  # noqa: BLE001 - any failure to answer is a dead cluster
            answer.append(False)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(answer and answer[0])


def shutdown() -> None:
    """Disconnect from Ray (and stop the private cluster, if ``connect`` started one,
    removing the session directory it left in Ray's temp folder)."""
    global _started_here, _session_dir
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if _started_here and _session_dir is not None and _session_dir.name.startswith("session_"):
        shutil.rmtree(_session_dir, ignore_errors=True)
        latest = _session_dir.parent / "session_latest"
        if latest.is_symlink() and not latest.exists():
            latest.unlink(missing_ok=True)
    _started_here, _session_dir = False, None
