"""Run ``Search.generate_problems`` on Ray actors: one model replica per actor.

``run_on_ray`` cuts the problems into the same chunks the local executor uses
(``planning``: as many problems as fill a batch with their first round), keeps at most
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
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Callable, Sequence

import ray
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

from . import ray_cluster
from .planning import chunked, first_round, problems_per_batch
from .stages import Take, run_stages
from .stopping import StopRule

logger = logging.getLogger(__name__)

#: chunks queued per worker: one running, one waiting, so a worker never idles on a round trip
CHUNKS_IN_FLIGHT = 2
#: seconds between the driver's looks at a silent cluster
POLL_S = 5.0


class SearchWorker:
    """One model replica and its ``Search`` (a Ray actor; see ``_actor_class``).

    ``search_args``: ``model`` (zoo name or checkpoint dir), ``task`` (task
    config dict), ``sampler`` (``SamplerConfig.to_dict()``), ``batch_size``,
    ``seed``, ``device`` (where this actor runs the model), optionally ``strategy`` and
    its options, ``repair`` (``RepairConfig`` fields) or ``smc`` (``ParticleConfig``
    fields), of ``Search``, and ``temporal``. ``run_on_ray`` starts
    the module's ``SearchWorker`` as its actor class, so a subclass put in its place
    (the fault-injection tests' crashing worker) runs instead.
    """

    def __init__(self, search_args: dict, threads: int | None = 1):
        import torch

        from sdtt_search.cli import task_from_config
        from sdtt_search.sampling_config import SamplerConfig
        from sdtt_search.loading import load_model

        from .engine import Search
        from .order_search import OrderConfig
        from .particles import ParticleConfig
        from .repair import RepairConfig

        device = str(search_args.get("device") or "cpu")
        if not device.startswith("cuda") and threads:
            torch.set_num_threads(int(threads))
        model = load_model(search_args["model"], device=device, **(search_args.get("load_options") or {}))
        task = task_from_config(search_args["task"])
        repair, smc, order = search_args.get("repair"), search_args.get("smc"), search_args.get("order")
        self.search = Search(model, task, SamplerConfig.from_dict(search_args["sampler"]),
                             batch_size=int(search_args["batch_size"]), seed=int(search_args["seed"]),
                             strategy=search_args.get("strategy") or "best_of_n",
                             repair=None if repair is None else RepairConfig(**repair),
                             smc=None if smc is None else ParticleConfig(**smc),
                             order=None if order is None else OrderConfig(**order),
                             temporal=bool(search_args.get("temporal", False)))

    def generate(self, problems: Sequence, n: int, stop: dict | None = None) -> list:
        """``generate_problems``, or with ``stop`` (a ``StopRule``'s fields) ``until_stopped``."""
        if stop is not None:
            return self.search.until_stopped(problems, n, StopRule(**stop))
        return self.search.generate_problems(problems, n)


_ACTOR_CLASSES: dict[type, Any] = {}


def _actor_class():
    """The Ray actor class of the module's ``SearchWorker`` (looked up at call time)."""
    worker = SearchWorker
    if worker not in _ACTOR_CLASSES:
        # max_restarts=0: a dead actor stays dead and run_on_ray replaces it (and knows it did).
        _ACTOR_CLASSES[worker] = ray.remote(max_restarts=0, max_task_retries=0)(worker)
    return _ACTOR_CLASSES[worker]


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
    _check_counts(n, workers)
    problems = list(problems)
    if not problems:
        return
    with _cluster(ray_cfg):
        _run(search_args, problems, n, workers, ray_cfg, lambda index, result: on_result(result), stop)


def _check_counts(n: int, workers: int) -> None:
    if n < 1:
        raise ValueError(f"samples={n} must be a positive integer")
    if workers < 1:
        raise ValueError(f"workers={workers} must be a positive integer")


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
    once for all stages. The stages pass problems on as ``Cascade.run`` does
    (``stages.run_stages``)."""
    problems = list(problems)
    if not problems:
        return
    with _cluster(ray_cfg):
        rules = [StopRule.from_dict(stage) for stage in stages]

        def draw(s: int, open_problems: list, take: Take) -> None:
            stage = stages[s]
            _check_counts(int(stage["samples"]), workers)
            _run(stage["search_args"], open_problems, int(stage["samples"]), workers, ray_cfg, take, rules[s])

        run_stages(problems, rules, draw, lambda index, result: on_result(result))


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


def _run(search_args: dict, problems: list, n: int, workers: int, ray_cfg: Any, take: Take,
         stop: StopRule | None = None) -> None:
    """Search ``problems`` on ``workers`` actors (Ray connected), ``take(index in problems,
    result)`` per problem as its chunk comes back."""
    max_retries = int(_cfg(ray_cfg, "max_retries", 3))
    stall_timeout_s = float(_cfg(ray_cfg, "stall_timeout_s", 1800))
    step = problems_per_batch(int(search_args["batch_size"]), first_round(n, stop))
    stop_fields = None if stop is None else asdict(stop)
    chunks = chunked(problems, step)
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
                for offset, result in enumerate(results):
                    take(index * step + offset, result)
    finally:
        if ray_cluster.alive(timeout_s=5.0):  # a dead cluster cannot kill actors: do not wait on it
            for actor in actors:
                ray.kill(actor, no_restart=True)
