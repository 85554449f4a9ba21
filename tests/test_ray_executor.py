"""The Ray executor: a private loopback-only cluster, same results as the local executor, worker crashes.

One Ray cluster serves the whole module (``ray_session``): ``ray.init`` takes
seconds here, and ``run_on_ray`` reuses a live connection.
"""
from __future__ import annotations

import ipaddress
import os
import re
import sys
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from sdtt_search.checkpoint import save_pretrained  # noqa: E402
from sdtt_search.diffusion import SamplerConfig  # noqa: E402
from sdtt_search.loading import load_model  # noqa: E402
from sdtt_search.model import Denoiser, ModelConfig  # noqa: E402
from sdtt_search.search import ray_cluster  # noqa: E402
from sdtt_search.search.engine import Search  # noqa: E402
from sdtt_search.search.cascade import Cascade, Stage  # noqa: E402
from sdtt_search.search.ray_executor import run_cascade_on_ray, run_on_ray  # noqa: E402
from sdtt_search.search.stopping import StopRule  # noqa: E402
from sdtt_search.tokenizer import Tokenizer  # noqa: E402
from tasks import load_task  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TASK = {"name": "countdown", "path": None, "options": {"n": 3}}
RAY_CFG = {"address": None, "dashboard": False, "num_cpus": 2, "max_retries": 2}


@pytest.fixture(scope="session")
def ray_session():
    """One private Ray cluster (2 CPUs, loopback only) for the whole test session."""
    already = ray.is_initialized()
    ray_cluster.connect(None, num_cpus=2)
    yield
    if not already:
        ray_cluster.shutdown()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random countdown diffusion model (random everywhere, so candidates differ)."""
    tok = Tokenizer.char_level("0123456789+-*/=,")
    cfg = ModelConfig.from_size("tiny", vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=64)
    torch.manual_seed(1234)
    model = Denoiser(cfg)
    with torch.no_grad():
        for p in model.parameters():  # the head starts at zero: perturb everything
            torch.nn.init.normal_(p, std=0.5)
    return save_pretrained(tmp_path_factory.mktemp("ray") / "tiny-cd3", model.eval(), tok,
                           meta={"kind": "diffusion", "gen_length": 12, "sampling_steps": 4, "task": TASK})


def search_args(checkpoint: Path, **extra) -> dict:
    model = load_model(checkpoint)
    return {"model": str(checkpoint), "task": TASK, "sampler": model.default_sampler().to_dict(), "batch_size": 8,
            "seed": 3, "device": "cpu", **extra}


# ------------------------------------------------------------------ the private cluster
def _ray_pids() -> set[int]:
    """This process and all its descendants (gcs_server, raylet, agents, workers)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {os.getpid()}, True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def _listening_sockets(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket (v4 and v6) owned by ``pids``, from /proc."""
    listening = {}  # socket inode -> (address, port)
    for name, family in (("tcp", 4), ("tcp6", 6)):
        lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            if family == 4:
                address = ipaddress.IPv4Address(raw[::-1])
            else:  # four little-endian 32-bit words
                address = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            listening[inode] = (str(address), int(hex_port, 16))
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match and int(match.group(1)) in listening:
                found.append((*listening[int(match.group(1))], pid))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # [::ffff:127.0.0.1]: gRPC's dual-stack socket bound to 127.0.0.1
    return ip.is_loopback


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return "?"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_private_cluster_listens_on_loopback_only_with_token_auth(ray_session):
    from ray._raylet import AuthenticationMode, get_authentication_mode

    if not ray_cluster.started_here():
        pytest.skip("Ray was already connected elsewhere; this test checks the private cluster")

    # Two actors, so core-worker gRPC servers of worker processes are counted too.
    @ray.remote(num_cpus=1)
    class Probe:
        def pid(self):
            return os.getpid()

    probes = [Probe.remote() for _ in range(2)]
    worker_pids = set(ray.get([p.pid.remote() for p in probes]))
    try:
        pids = _ray_pids()
        assert worker_pids <= pids
        sockets = _listening_sockets(pids)
        owners = {pid for _, _, pid in sockets}
        names = " | ".join(_cmdline(pid) for pid in owners)
        assert "gcs_server" in names and "raylet" in names, names  # we did see Ray's servers
        assert worker_pids <= owners and os.getpid() in owners
        exposed = [(a, port, _cmdline(pid)[:100]) for a, port, pid in sockets if not _is_loopback(a)]
        assert not exposed, f"listening beyond loopback: {exposed}"

        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        assert get_authentication_mode() == AuthenticationMode.TOKEN
        # No dashboard: no URL, nothing on its port. With include_dashboard=False Ray 2.60 still runs
        # dashboard.py headless (--disable-frontend, only the usage-stats module); it must not listen.
        assert not ray._private.worker.global_worker.node.address_info.get("webui_url")
        assert all(port != 8265 for _, port, _ in sockets)
        heads = [pid for pid in pids if "dashboard/dashboard.py" in " ".join(_cmdline(pid).split()[:2])]
        for pid in heads:
            assert "--disable-frontend" in _cmdline(pid) and pid not in owners
    finally:
        for probe in probes:
            ray.kill(probe)


def test_connect_reuses_the_live_connection(ray_session):
    gcs = ray.get_runtime_context().gcs_address
    ray_cluster.connect(None, num_cpus=2)
    ray_cluster.connect("auto")
    assert ray.get_runtime_context().gcs_address == gcs


# ------------------------------------------------------------------ the executor
def _by_id(results) -> dict:
    return {r.id: [(c.text, c.answer) for c in r.candidates] for r in results}


def test_ray_matches_local(ray_session, tiny_checkpoint):
    args = search_args(tiny_checkpoint)
    problems = load_task("countdown", n=3).problems(limit=6)
    local_search = Search(load_model(tiny_checkpoint), load_task("countdown", n=3),
                          SamplerConfig.from_dict(args["sampler"]), batch_size=args["batch_size"], seed=args["seed"])
    local = list(local_search.iter_results(problems, 4))

    remote = []
    run_on_ray(search_args=args, problems=problems, n=4, workers=2, ray_cfg=RAY_CFG, on_result=remote.append)

    assert sorted(r.id for r in remote) == sorted(p.id for p in problems)  # each exactly once
    assert _by_id(remote) == _by_id(local)
    texts = [c.text for r in local for c in r.candidates]
    assert len(set(texts)) > 1  # the random model really samples different candidates
    assert {r.id: r.selected for r in remote} == {r.id: r.selected for r in local}
    assert ray.is_initialized()  # the session's cluster is reused, not shut down


def test_ray_repair_matches_local(ray_session, tiny_checkpoint):
    # strategy=repair: each failing candidate is re-denoised on the worker, seeded by (seed, problem, index, round)
    from sdtt_search.search.repair import RepairConfig

    repair = RepairConfig(rounds=2, steps=2, k=3)
    args = search_args(tiny_checkpoint, strategy="repair", repair=repair.to_dict())
    problems = load_task("countdown", n=3).problems(limit=4)
    local = list(Search(load_model(tiny_checkpoint), load_task("countdown", n=3),
                        SamplerConfig.from_dict(args["sampler"]), batch_size=5, seed=args["seed"],
                        strategy="repair", repair=repair).iter_results(problems, 3))
    remote = []
    run_on_ray(search_args=args, problems=problems, n=3, workers=2, ray_cfg=RAY_CFG, on_result=remote.append)
    rounds = lambda results: {r.id: [(c.text, c.score, c.repaired_rounds) for c in r.candidates]  # noqa: E731
                              for r in results}
    assert rounds(remote) == rounds(local)
    assert any(c.repaired_rounds for r in local for c in r.candidates)


def test_ray_particle_search_matches_local(ray_session, tiny_checkpoint):
    # strategy=smc: a problem's particles are decoded and resampled on one worker, seeded by
    # (seed, problem, particle, stage): the same candidates as in-process
    from sdtt_search.search.particles import ParticleConfig

    smc = ParticleConfig(every=1, weights="confidence")
    args = search_args(tiny_checkpoint, strategy="smc", smc=smc.to_dict())
    problems = load_task("countdown", n=3).problems(limit=4)
    local = list(Search(load_model(tiny_checkpoint), load_task("countdown", n=3),
                        SamplerConfig.from_dict(args["sampler"]), batch_size=5, seed=args["seed"],
                        strategy="smc", smc=smc).iter_results(problems, 3))
    remote = []
    run_on_ray(search_args=args, problems=problems, n=3, workers=2, ray_cfg=RAY_CFG, on_result=remote.append)
    particles = lambda results: {r.id: ([(c.text, c.score) for c in r.candidates], r.particles)  # noqa: E731
                                 for r in results}
    assert particles(remote) == particles(local)
    assert all(r.particles["checks"] > 0 for r in local)


def test_ray_order_search_matches_local(ray_session, tiny_checkpoint):
    # strategy=order: a problem's beam is expanded on one worker, seeded by (seed, problem, step, parent, child)
    from sdtt_search.search.order_search import OrderConfig

    order = OrderConfig(branch=2)
    args = search_args(tiny_checkpoint, strategy="order", order=order.to_dict())
    problems = load_task("countdown", n=3).problems(limit=4)
    local = list(Search(load_model(tiny_checkpoint), load_task("countdown", n=3),
                        SamplerConfig.from_dict(args["sampler"]), batch_size=5, seed=args["seed"],
                        strategy="order", order=order).iter_results(problems, 3))
    remote = []
    run_on_ray(search_args=args, problems=problems, n=3, workers=2, ray_cfg=RAY_CFG, on_result=remote.append)
    assert _by_id(remote) == _by_id(local)


def test_ray_serves_a_hub_causal_lm_as_local(ray_session, tmp_path):
    # hf:<dir> of a causal LM: the driver only describes it, each worker loads its replica, and the
    # candidates are those of the in-process search (per-candidate seeds on the transformers backend)
    from test_hf_causal import _write_causal_lm

    directory = _write_causal_lm(tmp_path / "tiny-qwen2", "qwen2")
    spec = f"hf:{directory}"
    described = load_model(spec, device="meta", ar_backend="transformers")
    assert described.kind == "ar" and described.backend_name == "transformers"
    with pytest.raises(RuntimeError, match="only described"):
        described.generate(["q"], described.default_sampler(), seeds=[0])
    sampler = SamplerConfig(method="autoregressive", steps=6, gen_length=6, temperature=1.0)
    task = {"name": "countdown", "options": {"n": 3}}
    args = {"model": spec, "task": task, "sampler": sampler.to_dict(), "batch_size": 4, "seed": 2, "device": "cpu",
            "load_options": {"ar_backend": "transformers"}}
    problems = load_task("countdown", n=3).problems(limit=3)
    local = Search(load_model(spec, ar_backend="transformers"), load_task("countdown", n=3), sampler, batch_size=4,
                   seed=2).generate_problems(problems, 2)
    remote = []
    run_on_ray(search_args=args, problems=problems, n=2, workers=2, ray_cfg=RAY_CFG, on_result=remote.append)
    assert _by_id(remote) == _by_id(local)


def test_ray_verify_and_stop_matches_local(ray_session):
    # a real zoo student, most of whose Sudoku samples verify: problems stop after a round or two
    # with stratified first tokens: the workers draw at the same points as the local search
    model = load_model("sudoku4-sdtt-2")
    task = {"name": "sudoku", "options": {"size": 4}}
    sampler = SamplerConfig.from_dict({**model.default_sampler().to_dict(), "stratify": 2})
    args = {"model": "sudoku4-sdtt-2", "task": task, "sampler": sampler.to_dict(), "batch_size": 8,
            "seed": 5, "device": "cpu"}
    problems = load_task("sudoku", size=4).problems(limit=10)
    local = list(Search(model, load_task("sudoku", size=4), sampler, batch_size=8, seed=5)
                 .iter_results(problems, 8, stop=StopRule(2)))
    remote = []
    run_on_ray(search_args=args, problems=problems, n=8, workers=2, ray_cfg=RAY_CFG, on_result=remote.append,
               stop=StopRule(2))
    assert sorted(r.id for r in remote) == sorted(p.id for p in problems)
    assert _by_id(remote) == _by_id(local)
    drawn = [len(r.candidates) for r in remote]
    assert min(drawn) == 2 and all(d % 2 == 0 and d <= 8 for d in drawn)  # stopped early, whole rounds


def test_ray_cascade_matches_local(ray_session, tiny_checkpoint):
    # stage 1: the tiny random model, whose expressions never verify; stage 2: a zoo student that keeps a
    # problem once its majority answer is sure (the rule travels to the workers)
    task = load_task("countdown", n=3)
    first_args = search_args(tiny_checkpoint, batch_size=8)
    student = load_model("countdown-cd3-num-sdtt-4")
    second_args = {"model": "countdown-cd3-num-sdtt-4", "task": TASK, "sampler": student.default_sampler().to_dict(),
                   "batch_size": 8, "seed": 1, "device": "cpu"}
    problems = task.problems(limit=6)
    local = Cascade([
        Stage(Search(load_model(tiny_checkpoint), task, SamplerConfig.from_dict(first_args["sampler"]), batch_size=8,
                     seed=first_args["seed"]), samples=2, round_size=1),
        Stage(Search(student, task, student.default_sampler(), batch_size=8, seed=1), samples=8, round_size=4,
              on="majority", confidence=0.8),
    ]).run(problems)
    remote = []
    run_cascade_on_ray(stages=[{"search_args": first_args, "samples": 2, "round_size": 1},
                               {"search_args": second_args, "samples": 8, "round_size": 4, "on": "majority",
                                "confidence": 0.8}],
                       problems=problems, workers=2, ray_cfg=RAY_CFG, on_result=remote.append)
    assert sorted(r.id for r in remote) == sorted(p.id for p in problems)
    assert _by_id(remote) == _by_id(local)
    assert {r.id: r.stage_samples for r in remote} == {r.id: r.stage_samples for r in local}
    assert all(r.stage_samples[0] == 2 and r.stage_samples[1] in (4, 8) for r in remote)  # every problem reached stage 2
    assert sum(any(c.verified for c in r.candidates) for r in remote) >= 4  # where the student solves most
    assert {r.id: r.selected for r in remote} == {r.id: r.selected for r in local}
    assert ray.is_initialized()


def crashing_worker(marker: Path) -> type:
    """Fault injection: a ``SearchWorker`` of which the first actor to find ``marker`` deletes
    it and exits abruptly while handling a chunk (a crashed worker process). Made in a
    function, so that Ray ships the class itself (by value) to its worker processes."""
    from sdtt_search.search.ray_executor import SearchWorker

    class CrashingWorker(SearchWorker):
        def generate(self, problems, n, stop=None):
            try:
                os.remove(marker)
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
            return super().generate(problems, n, stop)

    return CrashingWorker


def test_dead_worker_is_replaced_and_nothing_is_lost(ray_session, tiny_checkpoint, tmp_path, monkeypatch):
    from sdtt_search.search import ray_executor

    marker = tmp_path / "die-once"
    marker.write_text("x")
    monkeypatch.setattr(ray_executor, "SearchWorker", crashing_worker(marker))
    args = search_args(tiny_checkpoint)
    problems = load_task("countdown", n=3).problems(limit=6)

    remote = []
    run_on_ray(search_args=args, problems=problems, n=4, workers=2, ray_cfg=RAY_CFG, on_result=remote.append)

    assert not marker.exists()  # a worker did die
    assert sorted(r.id for r in remote) == sorted(p.id for p in problems)
    assert all(len(r.candidates) == 4 for r in remote)


def test_worker_that_keeps_dying_gives_one_line_error(ray_session, tiny_checkpoint, tmp_path, monkeypatch):
    from sdtt_search.search import ray_executor

    marker = tmp_path / "die-always"
    marker.write_text("x")
    monkeypatch.setattr(ray_executor, "SearchWorker", crashing_worker(marker))
    args = search_args(tiny_checkpoint)
    problems = load_task("countdown", n=3).problems(limit=2)

    def touch_then_wait(refs, num_returns=1, timeout=None):  # re-arm the crash before every wait
        marker.write_text("x")
        return real_wait(refs, num_returns=num_returns, timeout=timeout)

    real_wait = ray.wait
    monkeypatch.setattr(ray_executor.ray, "wait", touch_then_wait)
    with pytest.raises(RuntimeError) as err:
        run_on_ray(search_args=args, problems=problems, n=4, workers=1, ray_cfg={**RAY_CFG, "max_retries": 1},
                   on_result=lambda r: None)
    assert "\n" not in str(err.value) and "max_retries=1" in str(err.value)


def test_run_with_ray_executor_matches_local(ray_session, tiny_checkpoint, tmp_path):
    """``sdtt_search.run`` end to end (results.jsonl) with executor=ray vs executor=local.

    The model is set on the composed config: the command-line override ``model=<dir>`` collides with the
    ``configs/model/`` config group (Hydra reads it as a group choice), which is outside this module.
    """
    import json

    from sdtt_search.cli import compose
    from sdtt_search.run import run

    rows = {}
    for executor in ("ray", "local"):
        cfg = compose("run", ["task=countdown", "samples=4", "limit=6", f"executor={executor}", "workers=2",
                              f"output_dir={tmp_path / executor}", "plot=false", "progress=false", "device=cpu"])
        cfg.model = str(tiny_checkpoint)
        metrics = run(cfg)
        assert metrics["executor"] == executor
        lines = (tmp_path / executor / "results.jsonl").read_text().splitlines()
        results = [json.loads(line) for line in lines]
        rows[executor] = {r["id"]: [(c["text"], c["answer"]) for c in r["candidates"]] for r in results if "id" in r}
    assert len(rows["ray"]) == 6 and rows["ray"] == rows["local"]
    assert ray.is_initialized()


def test_worker_that_cannot_start_gives_one_line_error(ray_session, tiny_checkpoint, tmp_path):
    args = {**search_args(tiny_checkpoint), "model": str(tmp_path / "no-such-checkpoint")}
    problems = load_task("countdown", n=3).problems(limit=2)
    with pytest.raises(RuntimeError) as err:
        run_on_ray(search_args=args, problems=problems, n=4, workers=1, ray_cfg=RAY_CFG, on_result=lambda r: None)
    assert "\n" not in str(err.value) and "failed to start" in str(err.value), err.value


def test_a_lost_node_stops_the_run_with_one_line_error_and_leaves_no_session_dir(tiny_checkpoint):
    """Killing the private cluster's raylet while chunks are in flight (the node is
    gone) ends the run with a one-line error within seconds instead of waiting forever,
    and the cluster's session directory is removed. In a subprocess: the kill takes
    that process's cluster down, not this module's."""
    import subprocess
    import time

    start = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "ray_lost_node.py"), str(tiny_checkpoint)],
                          capture_output=True, text=True, timeout=300, cwd=str(REPO / "tests"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("RESULT", "SHUTDOWN"))]
    assert lines and lines[0].startswith("RESULT error"), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "lost its node" in lines[0] and "rerun with the same output_dir" in lines[0]
    noticed = float(lines[0].split()[2])
    assert noticed < 60, lines[0]  # health checks every second, 5 misses; the driver looks every 5 s
    assert lines[-1] == "SHUTDOWN session_dir_left=False"
    assert time.time() - start < 300


def test_shutdown_removes_the_private_clusters_session_dir():
    import subprocess

    code = ("from sdtt_search.search import ray_cluster as c; c.connect(None, num_cpus=1); d = c._session_dir; "
            "assert d is not None and d.is_dir() and d.name.startswith('session_'), d; c.shutdown(); "
            "print('LEFT', d.exists())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert "LEFT False" in proc.stdout, proc.stdout[-1000:] + proc.stderr[-1000:]


def test_no_chunk_finishing_within_the_stall_timeout_is_a_one_line_error(ray_session, tiny_checkpoint, monkeypatch):
    from sdtt_search.search import ray_executor

    monkeypatch.setattr(ray_executor, "POLL_S", 0.01)
    problems = load_task("countdown", n=3).problems("test", limit=4)
    with pytest.raises(RuntimeError, match=r"no Ray search chunk finished in 0 s \(ray.stall_timeout_s=0.001\); rerun"):
        run_on_ray(search_args=search_args(tiny_checkpoint), problems=problems, n=4, workers=1,
                   ray_cfg={**RAY_CFG, "stall_timeout_s": 0.001}, on_result=lambda r: None)
