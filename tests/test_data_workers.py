"""train.data_workers: examples made by DataLoader worker processes, deterministic and
resumable (batch b from worker b mod workers, each worker its own seeded stream)."""
from __future__ import annotations

import pytest
import torch
from distill_fixtures import pretrain_config

from distill import pretrain
from distill.data import WorkerStream, batches_before
from distill.setup import build_tokenizer, make_stream
from distill.trainer import STATE_FILE, Trainer
from tasks import load_task


@pytest.fixture(scope="module")
def countdown():
    task = load_task("countdown", n=3)
    return task, build_tokenizer(task, {"kind": "char"}, 0)


def _batches(stream, n, size=8):
    return [stream.next_batch(size).x.clone() for _ in range(n)]


def test_batches_before_counts_each_workers_share():
    # batches 0..6 with 3 workers: worker 0 made 0, 3, 6; worker 1 made 1, 4; worker 2 made 2, 5
    assert [batches_before(7, w, 3) for w in range(3)] == [3, 2, 2]
    assert [batches_before(0, w, 3) for w in range(3)] == [0, 0, 0]
    assert sum(batches_before(10, w, 4) for w in range(4)) == 10


def test_worker_streams_are_deterministic_and_interleave_distinct_shards(countdown):
    task, tok = countdown
    a = make_stream(task, tok, 24, seed=3, workers=2)
    b = make_stream(task, tok, 24, seed=3, workers=2)
    assert isinstance(a, WorkerStream)
    xa, xb = _batches(a, 6), _batches(b, 6)
    a.close(), b.close()
    assert all(torch.equal(p, q) for p, q in zip(xa, xb))
    assert not torch.equal(xa[0], xa[1])  # the two workers draw different examples
    # worker 0's stream alone is the in-process stream with the shard's seed
    from distill.data import ExampleStream, shard_seed
    solo = ExampleStream(task.train_examples(shard_seed(3, 0)), tokenizer=tok, gen_length=24)
    assert torch.equal(solo.next_batch(8).x, xa[0]) and torch.equal(solo.next_batch(8).x, xa[2])
    assert a.consumed == {"batches": 6, "workers": 2, "batch_size": 8}


def test_a_resumed_worker_stream_continues_with_the_same_batches(countdown):
    task, tok = countdown
    straight = make_stream(task, tok, 24, seed=5, workers=2)
    reference = _batches(straight, 8)
    straight.close()
    # an odd position: the DataLoader's first worker must now play worker 1
    resumed = make_stream(task, tok, 24, seed=5, workers=2)
    resumed.skip_to({"batches": 3, "workers": 2, "batch_size": 8})
    rest = _batches(resumed, 5)
    resumed.close()
    assert all(torch.equal(p, q) for p, q in zip(reference[3:], rest))


def test_resuming_with_another_worker_count_is_a_one_line_error(countdown):
    task, tok = countdown
    stream = make_stream(task, tok, 24, seed=0, workers=2)
    for state in (17, {"batches": 3, "workers": 4, "batch_size": 8}):
        with pytest.raises(ValueError) as err:
            stream.skip_to(state)
        assert "train.data_workers" in str(err.value) and "\n" not in str(err.value)


def test_pretrain_with_data_workers_resumes_to_the_uninterrupted_state(tmp_path, monkeypatch):
    args = ("train.data_workers=2",)
    pretrain.run(pretrain_config(tmp_path / "straight", *args))
    original = Trainer.train_step

    def dying(self):
        if self.step == 6:  # the last save was at step 4
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(pretrain_config(tmp_path / "killed", *args))
    monkeypatch.setattr(Trainer, "train_step", original)
    pretrain.run(pretrain_config(tmp_path / "killed", *args))
    a, b = (torch.load(tmp_path / d / STATE_FILE, weights_only=True) for d in ("straight", "killed"))
    assert a["step"] == b["step"] == 12 and a["consumed"] == b["consumed"] == {"batches": 12, "workers": 2, "batch_size": 8}
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor, b["model"][name], atol=1e-6), name
