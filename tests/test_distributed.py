"""Data parallelism: 2 gloo processes train exactly like one process on the same data.

The causal (AR) loss has no random masking, and every row has the same number of
loss tokens, so the mean of the two ranks' gradients equals the single-process
gradient of the whole batch: the runs must agree to float tolerance.
"""
from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from distill.data import ExampleStream
from distill.distributed import DistContext
from distill.pretrain import make_loss
from distill.trainer import TrainConfig, Trainer
from sdtt_search.model import Denoiser, ModelConfig
from sdtt_search.tokenizer import Tokenizer
from tasks import load_task


def _train(rank: int, world: int, port: int, out_dir: str) -> None:
    if world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist = DistContext.from_env(backend="gloo")
    tok = Tokenizer.char_level("0123456789+-*/=,")
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(vocab_size=tok.vocab_size, mask_id=tok.mask_id, hidden_size=32, n_layers=1,
                                 n_heads=2, cond_dim=16, causal=True))
    for p in model.parameters():  # non-zero head so gradients flow everywhere
        torch.nn.init.normal_(p, std=0.1)
    stream = ExampleStream(load_task("countdown", n=3).train_examples(0), tokenizer=tok, gen_length=24,
                           rank=dist.rank, world_size=dist.world_size)
    config = TrainConfig(steps=4, batch_size=8, lr=1e-2, warmup=0, schedule="constant", log_every=1, save_every=0,
                         eval_every=0)
    trainer = Trainer(model=model, loss_fn=make_loss("ar", tok.mask_id), stream=stream, config=config,
                      output_dir=out_dir, dist=dist, show_progress=False)
    trainer.run()
    if dist.rank == 0:
        weights = {k: v.tolist() for k, v in model.state_dict().items()}
        losses = [r["loss"] for r in trainer.history if "loss" in r]
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump({"losses": losses, "weights": weights}, f)
    if dist.enabled:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    single.mkdir()
    double.mkdir()
    threads = torch.get_num_threads()
    try:
        _train(0, 1, 0, str(single))
    finally:
        torch.set_num_threads(threads)
    mp.start_processes(_train, args=(2, _free_port(), str(double)), nprocs=2, start_method="spawn", join=True)
    a = json.loads((single / "result.json").read_text())
    b = json.loads((double / "result.json").read_text())
    assert len(a["losses"]) == len(b["losses"]) == 4
    for x, y in zip(a["losses"], b["losses"]):
        assert abs(x - y) < 1e-5, (a["losses"], b["losses"])
    for name in a["weights"]:
        assert torch.allclose(torch.tensor(a["weights"][name]), torch.tensor(b["weights"][name]), atol=1e-5), name
