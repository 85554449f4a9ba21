"""Run a Ray search on a private cluster and kill its raylet while chunks are in flight.

Used by ``test_ray_executor.test_a_lost_node_stops_the_run_with_one_line_error`` in a
subprocess (the kill takes the cluster down): prints ``RESULT <message>`` and exits.
Usage: python ray_lost_node.py CHECKPOINT_DIR
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from sdtt_search.search import ray_cluster
from sdtt_search.search.ray_executor import run_on_ray
from tasks import load_task


def raylet_pids() -> list[int]:
    """The raylet processes started by this process (its descendants; Linux /proc): never
    another cluster's, such as the one the test suite itself runs on."""
    parent: dict[int, int] = {}
    argv0: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    parent[int(entry)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv0[int(entry)] = fh.read().split(b"\0", 1)[0]
            except (OSError, ValueError, IndexError):
                continue

    def mine(pid: int) -> bool:
        for _ in range(64):
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
            if pid <= 1:
                return False
        return False

    return [pid for pid, name in argv0.items() if name.endswith(b"/raylet") and mine(pid)]


def kill_raylet_when_busy(started: threading.Event, killed_at: list) -> None:
    started.wait(120)
    time.sleep(2.0)  # chunks are in flight
    for pid in raylet_pids():
        os.kill(pid, signal.SIGKILL)
    killed_at.append(time.time())


def main(checkpoint: str) -> None:
    task = {"name": "countdown", "path": None, "options": {"n": 3}}
    problems = load_task("countdown", n=3).problems("test", limit=400)
    started, killed_at = threading.Event(), []
    threading.Thread(target=kill_raylet_when_busy, args=(started, killed_at), daemon=True).start()
    done = []

    def on_result(result) -> None:
        done.append(result.id)
        started.set()

    args = {"model": checkpoint, "task": task, "sampler": {"method": "ancestral", "steps": 4, "temperature": 1.0},
            "batch_size": 16, "seed": 0, "device": "cpu"}
    t0 = time.time()
    try:
        run_on_ray(search_args=args, problems=problems, n=16, workers=2,
                   ray_cfg={"address": None, "num_cpus": 2, "max_retries": 2}, on_result=on_result)
        print(f"RESULT finished {len(done)} in {time.time() - t0:.0f} s", flush=True)
    except RuntimeError as err:
        noticed = time.time() - killed_at[0] if killed_at else float("nan")
        print(f"RESULT error {noticed:.0f} s after the kill, {len(done)} problems done: {err}", flush=True)
    finally:
        session = ray_cluster._session_dir
        ray_cluster.shutdown()
    print(f"SHUTDOWN session_dir_left={session is not None and session.exists()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
