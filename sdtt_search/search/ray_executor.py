"""Run ``Search.generate_problems`` on Ray actors: one model replica per actor.

``run_on_ray`` cuts the problems into the same chunks the local executor uses
(``Search.problems_per_batch(n)`` problems each), keeps at most
``CHUNKS_IN_FLIGHT`` chunks queued per worker, and hands every finished
problem to ``on_result`` on the driver as its chunk comes back (chunks may
finish out of order). Candidates are seeded by (seed, problem id, index), so
the results equal the local executor's.

A worker that dies is replaced by a fresh actor and the chunks it held are
resubmitted, each at most ``ray.max_retries`` times. Nothing waits forever: the
driver looks up every :data:`POLL_S` seconds; a cluster with no live node left
(a lost raylet) or no chunk finished for ``ray.stall_timeout_s`` seconds stops the
run with a one-line error, and a rerun with the same ``output_dir`` resumes.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Callable, Sequence

import ray
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

from . import ray_cluster

logger = logging.getLogger(__name__)

#: chunks queued per worker: one running, one waiting, so a worker never idles on a round trip
CHUNKS_IN_FLIGHT = 2
#: seconds between the driver's looks at a silent cluster
POLL_S = 5.0


def _problems_per_batch(batch_size: int, n: int) -> int:
    """``Search.problems_per_batch`` without building a ``Search`` on the driver."""
    return max(1, batch_size // n)


class SearchWorker:
    """One model replica and its ``Search`` (a Ray actor; see ``_actor_class``).

    ``search_args``: ``model`` (zoo name or checkpoint dir), ``task`` (task
    config dict), ``sampler`` (``SamplerConfig.to_dict()``), ``batch_size``,
    ``seed``, ``device`` (where this actor runs the model). Test-only:
    ``_test_die_once_file``, a path; the first worker that finds it there
    deletes it and exits abruptly while handling a chunk.
    """

    def __init__(self, search_args: dict, threads: int | None = 1):
        import torch

        from sdtt_search.cli import task_from_config
        from sdtt_search.sampling_config import SamplerConfig
        from sdtt_search.loading import load_model

        from .engine import Search

        device = str(search_args.get("device") or "cpu")
        if not device.startswith("cuda") and threads:
            torch.set_num_threads(int(threads))
        model = load_model(search_args["model"], device=device, **(search_args.get("load_options") or {}))
        task = task_from_config(search_args["task"])
        self.search = Search(model, task, SamplerConfig.from_dict(search_args["sampler"]),
                             batch_size=int(search_args["batch_size"]), seed=int(search_args["seed"]))
        self._die_once_file = search_args.get("_test_die_once_file")

    def generate(self, problems: Sequence, n: int, stop: dict | None = None) -> list:
        """``generate_problems``, or with ``stop`` (a ``StopRule``'s fields) ``until_stopped``."""
        if self._die_once_file:  # test-only hook: simulate a crashed worker, once
            try:
                os.remove(self._die_once_file)
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        if stop is not None:
            from .stopping import StopRule

            return self.search.until_stopped(problems, n, StopRule(**stop))
        return self.search.generate_problems(problems, n)


_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        # max_restarts=0: a dead actor stays dead and run_on_ray replaces it (and knows it did).
        _ACTOR_CLASS = ray.remote(max_restarts=0, max_task_retries=0)(SearchWorker)
    return _ACTOR_CLASS


def _cfg(ray_cfg: Any, key: str, default: Any) -> Any:
    if ray_cfg is None:
        return default
    value = ray_cfg.get(key, default) if hasattr(ray_cfg, "get") else getattr(ray_cfg, key, default)
    return default if value is None else value


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _placement(search_args: dict, workers: int) -> tuple[dict, str, int]:
    """Actor resources, the device the actors use, and how many actors can run at once."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    wants_cuda = str(search_args.get("device") or "cpu").startswith("cuda")
    if wants_cuda and gpus >= 1:  # the cluster's GPUs count, not the driver's: one replica per GPU
        return {"num_gpus": 1, "num_cpus": 1}, "cuda", gpus
    if wants_cuda:
        logger.warning("device=%s but the Ray cluster has no GPU; the workers run on CPU", search_args.get("device"))
    return {"num_cpus": 1}, "cpu", int(resources.get("CPU", 0))


def run_on_ray(*, search_args: dict, problems: list, n: int, workers: int, ray_cfg: Any = None,
               on_result: Callable[[Any], None], stop: Any = None) -> None:
    """Best-of-``n`` over ``problems`` on ``workers`` Ray actors; ``on_result(ProblemResult)`` per problem.
    With ``stop`` (a ``StopRule``): early stopping (``Search.until_stopped``) within each chunk.

    ``ray_cfg``: the ``ray`` config block (``address``, ``dashboard``, ``num_cpus``,
    ``max_retries``). Connects with ``ray_cluster.connect`` unless Ray is already
    initialised; a cluster started here is shut down before returning.
    """
    if n < 1:
        raise ValueError(f"samples={n} must be a positive integer")
    if workers < 1:
        raise ValueError(f"workers={workers} must be a positive integer")
    problems = list(problems)
    if not problems:
        return
    with _cluster(ray_cfg):
        _run(search_args, problems, n, workers, int(_cfg(ray_cfg, "max_retries", 3)), on_result, stop,
             float(_cfg(ray_cfg, "stall_timeout_s", 1800)))


@contextmanager
def _cluster(ray_cfg: Any):
    """Connect (``ray_cluster.connect``) unless Ray is already initialised; shut down on
    leaving a cluster started here."""
    owns_cluster = not ray.is_initialized()
    ray_cluster.connect(_cfg(ray_cfg, "address", None), dashboard=bool(_cfg(ray_cfg, "dashboard", False)),
                        num_cpus=_cfg(ray_cfg, "num_cpus", None))
    try:
        yield
    finally:
        if owns_cluster:
            ray_cluster.shutdown()


def run_cascade_on_ray(*, stages: list[dict], problems: list, workers: int, ray_cfg: Any = None,
                       on_result: Callable[[Any], None]) -> None:
    """A cascade (``search.cascade``) on Ray: each stage is an early-stopping ``run_on_ray``
    over the problems no stage before it accepted. ``stages``: per stage ``search_args`` (as
    ``run_on_ray``'s), ``samples``, ``round_size`` and optionally ``on`` / ``confidence``
    (``cascade.Stage``'s). A problem is handed to ``on_result`` (merged over its stages) as
    soon as a stage accepts it or it has been through the last stage; the cluster is started
    once for all stages."""
    from .cascade import accepts, merge_stage, select
    from .stopping import StopRule

    problems = list(problems)
    if not problems:
        return
    merged: dict[str, Any] = {}
    with _cluster(ray_cfg):
        for s, stage in enumerate(stages):
            left = []
            rule = StopRule.from_dict(stage)

            def take(result, s=s, last=s == len(stages) - 1, left=left, rule=rule):
                merged[result.id] = merge_stage(merged.get(result.id), result, s, len(stages))
                if last or accepts(rule, result.candidates):
                    on_result(select(merged.pop(result.id), result.candidates))
                else:
                    left.append(result.id)

            run_on_ray(search_args=stage["search_args"], problems=problems, n=int(stage["samples"]), workers=workers,
                       ray_cfg=ray_cfg, on_result=take, stop=rule)
            left_ids = set(left)
            problems = [p for p in problems if p.id in left_ids]
            if not problems:
                break


def wait_one(refs: list, stall_timeout_s: float | None) -> list:
    """``ray.wait`` for one of ``refs``, looking at the cluster every ``POLL_S`` seconds:
    a one-line error when it has no live node, or nothing finished for ``stall_timeout_s``
    (None: no limit). Returns the finished refs."""
    waited = 0.0
    while True:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
        if ready:
            return ready
        waited += POLL_S
        if not ray_cluster.alive():
            raise RuntimeError("the Ray cluster lost its node (a raylet or the whole machine went down); "
                               "rerun with the same output_dir to resume")
        if stall_timeout_s is not None and waited >= stall_timeout_s:
            raise RuntimeError(f"no Ray search chunk finished in {waited:.0f} s (ray.stall_timeout_s="
                               f"{stall_timeout_s:g}); rerun with the same output_dir to resume, with a larger "
                               "ray.stall_timeout_s if chunks are that slow")


def _run(search_args: dict, problems: list, n: int, workers: int, max_retries: int,
         on_result: Callable[[Any], None], stop: Any = None, stall_timeout_s: float = 1800.0) -> None:
    step = _problems_per_batch(int(search_args["batch_size"]), n if stop is None else min(stop.round_size, n))
    stop_fields = None if stop is None else asdict(stop)
    chunks = [problems[lo : lo + step] for lo in range(0, len(problems), step)]
    options, device, capacity = _placement(search_args, workers)
    workers = min(workers, len(chunks))
    if capacity and workers > capacity:
        logger.warning("workers=%d but the Ray cluster has room for %d; using %d", workers, capacity, capacity)
        workers = capacity
    args = {**search_args, "device": device}
    actor_cls = _actor_class().options(**options)

    def new_actor():
        return actor_cls.remote(args)

    actors = [new_actor() for _ in range(workers)]
    generation = [0] * workers  # bumped when a slot's actor is replaced
    load = [0] * workers
    pending = deque(range(len(chunks)))
    failures = [0] * len(chunks)
    in_flight: dict = {}  # ObjectRef -> (chunk index, slot, generation)
    try:
        while pending or in_flight:
            for slot in range(workers):
                while pending and load[slot] < CHUNKS_IN_FLIGHT:
                    index = pending.popleft()
                    ref = actors[slot].generate.remote(chunks[index], n, stop_fields)
                    in_flight[ref] = (index, slot, generation[slot])
                    load[slot] += 1
            ready = wait_one(list(in_flight), stall_timeout_s)
            for ref in ready:
                index, slot, gen = in_flight.pop(ref)
                if gen == generation[slot]:
                    load[slot] -= 1
                try:
                    results = ray.get(ref)
                except (RayActorError, WorkerCrashedError) as err:
                    if isinstance(err, RayActorError) and err.actor_init_failed:
                        raise RuntimeError(f"a Ray search worker failed to start: {_last_line(err)}") from None
                    failures[index] += 1
                    chunk = chunks[index]
                    if failures[index] > max_retries:
                        raise RuntimeError(
                            f"problems {chunk[0].id}..{chunk[-1].id}: their Ray worker died {failures[index]} times "
                            f"(ray.max_retries={max_retries}); last error: {type(err).__name__}") from None
                    if gen == generation[slot]:  # first news of this death: replace the actor
                        logger.warning("Ray search worker %d died (%s); starting a new one and resubmitting its chunks",
                                       slot, type(err).__name__)
                        ray.kill(actors[slot], no_restart=True)
                        actors[slot] = new_actor()
                        generation[slot] += 1
                        load[slot] = 0
                    pending.appendleft(index)
                    continue
                except RayTaskError as err:  # the search itself raised: not worth a retry
                    raise RuntimeError(f"a Ray search worker failed: {_last_line(err)}") from None
                for result in results:
                    on_result(result)
    finally:
        if ray_cluster.alive(timeout_s=5.0):  # a dead cluster cannot kill actors: do not wait on it
            for actor in actors:
                ray.kill(actor, no_restart=True)
