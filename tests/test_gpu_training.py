"""The training programs on a CUDA GPU with xformers attention (run by benchmarks/gpu.sh).

The CPU suite covers the same programs with SDPA; these check the GPU path users train
on: bf16 autocast, the xformers kernels in backward, checkpoints written from CUDA
tensors, and an SDTT update that still moves the student towards its teacher there.
``check_*`` take the device and backend so the same checks can be run on CPU by hand.
"""
from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
from distill_fixtures import pretrain_config, sdtt_config

from distill import pretrain, sdtt
from distill.data import collate
from distill.sdtt import sdtt_targets, student_divergence
from sdtt_search.checkpoint import load_pretrained
from sdtt_search.model.attention import xformers_available
from tasks import load_task

needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
needs_xformers = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available() or not xformers_available(),
                                                      reason="needs a CUDA GPU and xformers kernels that run")]
BACKENDS = [pytest.param("sdpa", marks=needs_cuda), pytest.param("xformers", marks=needs_xformers)]


def check_pretrain_then_sdtt(root, device: str, backend: str) -> None:
    """Pretrain a tiny teacher, then two SDTT rounds, on ``device`` with ``backend`` attention."""
    common = [f"device={device}"]
    teacher = pretrain.run(pretrain_config(root / "teacher", *common, f"model.attention_backend={backend}",
                                           "train.steps=60", "train.batch_size=64", "train.lr=3e-3",
                                           "train.log_every=5", "eval.sampler.steps=8"))
    logs = [json.loads(line) for line in (root / "teacher" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert all(torch.isfinite(torch.tensor(losses)))
    # 60 steps on generated Countdown data: the loss of the last logs is well under the first's
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses
    loaded = load_pretrained(teacher)
    assert loaded.meta["device"].startswith(device)
    assert loaded.model.config.attention_backend == backend

    sdtt.run(sdtt_config(root / "sdtt", teacher, *common, "train.batch_size=32"))
    rounds = json.loads((root / "sdtt" / "rounds.json").read_text())
    assert [r["student_steps"] for r in rounds["rounds"].values()] == [4, 2]
    student = load_pretrained(root / "sdtt" / "round-2-steps-2")
    assert student.meta["sampling_steps"] == 2
    for name, p in student.model.state_dict().items():
        assert torch.isfinite(p).all(), name


def check_sdtt_update_lowers_divergence(root, device: str, backend: str) -> None:
    """One descent step on the student, under bf16 autocast on CUDA, lowers its divergence
    to the teacher's two-step target (computed in float64) on the same z_t."""
    teacher_dir = pretrain.run(pretrain_config(root / "t2", f"device={device}", f"model.attention_backend={backend}",
                                               "train.steps=10"))
    loaded = load_pretrained(teacher_dir)
    teacher, tok = loaded.model.to(device).eval(), loaded.tokenizer
    torch.manual_seed(0)
    for p in teacher.parameters():
        p.data.add_(torch.randn_like(p) * 0.3)
    student = copy.deepcopy(teacher).train()
    for p in student.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    pairs = list(itertools.islice(load_task("countdown", n=3).train_examples(1), 64))
    batch = collate(tok, pairs, int(loaded.meta["gen_length"])).to(device)
    amp = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    with amp:
        out = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=1 / 8, mask_id=tok.mask_id, eps=1e-5,
                           conditional=True)
        z, t, target = out.z, out.t, out.target

    def loss():
        with amp:
            return student_divergence(student, z, t, target, batch.attention_mask, mask_id=tok.mask_id,
                                      kind="kld", precision=64).loss

    before = loss()
    student.zero_grad()
    before.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    norm2 = float(sum((g.double() ** 2).sum() for g in grads))
    with torch.no_grad():
        for p in student.parameters():
            if p.grad is not None:
                p -= 0.05 * float(before.detach()) / norm2 * p.grad
    after = float(loss().detach())
    assert after < float(before.detach()), (float(before.detach()), after)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pretrain_then_sdtt_on_gpu(tmp_path, backend):
    check_pretrain_then_sdtt(tmp_path, "cuda", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sdtt_update_lowers_divergence_on_gpu_under_bf16(tmp_path, backend):
    check_sdtt_update_lowers_divergence(tmp_path, "cuda", backend)
