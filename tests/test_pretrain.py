"""distill.pretrain: trains, exports a loadable checkpoint, resumes exactly after a kill."""
from __future__ import annotations

import json

import pytest
import torch
from distill_fixtures import pretrain_config

from distill import pretrain
from distill.trainer import STATE_FILE, Trainer
from sdtt_search.checkpoint import load_pretrained


def _state(path):
    return torch.load(path / STATE_FILE, weights_only=True)


def test_pretrain_exports_a_checkpoint_that_loads(tmp_path):
    export = pretrain.run(pretrain_config(tmp_path))
    loaded = load_pretrained(export)
    assert loaded.meta["kind"] == "diffusion" and loaded.meta["train_steps"] == 12
    assert loaded.meta["gen_length"] >= 10 and loaded.meta["sampling_steps"] == 4
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 13))
    assert any(r.get("final") and "pass@1" in r for r in log)


def test_killed_run_resumes_to_the_uninterrupted_state(tmp_path, monkeypatch):
    pretrain.run(pretrain_config(tmp_path / "straight"))
    original = Trainer.train_step

    def dying(self):
        if self.step == 6:  # the last save was at step 4: steps 5-6 are lost and redone
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(pretrain_config(tmp_path / "killed"))
    assert _state(tmp_path / "killed")["step"] == 4
    monkeypatch.setattr(Trainer, "train_step", original)
    pretrain.run(pretrain_config(tmp_path / "killed"))
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "killed")
    assert a["step"] == b["step"] == 12 and a["consumed"] == b["consumed"]
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor, b["model"][name], atol=1e-6), name
    for name, tensor in a["ema"]["weights"].items():
        assert torch.allclose(tensor, b["ema"]["weights"][name], atol=1e-6), name


def test_ar_objective_trains_a_llama_format_twin_that_transformers_loads(tmp_path):
    from transformers import AutoModelForCausalLM

    from sdtt_search.ar import load_ar_pretrained

    export = pretrain.run(pretrain_config(tmp_path, "objective=ar"))
    loaded = load_ar_pretrained(export)
    assert loaded.meta["kind"] == "ar" and loaded.model.config.causal
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["final"] and 0.0 <= log[-1]["pass@1"] <= 1.0  # evaluated with the KV-cache decoder
    hf = AutoModelForCausalLM.from_pretrained(str(export)).eval()
    x = torch.tensor([loaded.tokenizer.encode("12 34 56 -> 78")])
    with torch.no_grad():
        assert torch.allclose(hf(input_ids=x).logits, loaded.model(x), atol=1e-5)


def test_mdm_objective_trains_a_denoiser_that_decodes_in_its_own_order(tmp_path):
    export = pretrain.run(pretrain_config(tmp_path, "objective=mdm", "eval.sampler.method=confidence",
                                          "+eval.sampler.remasking=margin"))
    loaded = load_pretrained(export)
    assert loaded.meta["kind"] == "diffusion" and loaded.meta["objective"] == "mdm"
    assert loaded.meta["sampler"]["remasking"] == "margin"
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 12 and all(0 < v < 1e3 for v in losses)


@pytest.mark.parametrize("override,needle", [
    ("objective=gpt", "objective"), ("train.lr=-1", "train.lr"), ("train.schedule=linear", "train.schedule"),
    ("semi_ar=2", "semi_ar"), ("+mdm.beta=2", "mdm.beta"),
])
def test_bad_values_are_one_line_errors(tmp_path, override, needle):
    with pytest.raises(ValueError) as err:
        pretrain.run(pretrain_config(tmp_path, override))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_gen_length_no_target_fits_is_a_one_line_error_not_an_endless_loop(tmp_path):
    with pytest.raises(ValueError) as err:
        pretrain.run(pretrain_config(tmp_path, "task.gen_length=3"))
    assert "task.gen_length" in str(err.value) and "\n" not in str(err.value)
