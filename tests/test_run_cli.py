"""``python -m sdtt_search.run`` in-process: outputs, resume after a kill, one-line errors."""
from __future__ import annotations

import json

import pytest

from sdtt_search import run as run_module
from sdtt_search.cli import compose
from sdtt_search.search.engine import Search
from search_fixtures import tiny_ckpt  # noqa: F401 - pytest fixture

LIMIT, SAMPLES = 6, 4


def _args(model, out, *extra):
    # batch_size=8: two problems per batch, so results.jsonl grows in three steps
    return ["task=countdown", f"model={model}", f"samples={SAMPLES}", f"limit={LIMIT}", "sampler.steps=4",
            "sampler.temperature=1.0", "executor=local", "workers=1", "seed=0", "batch_size=8", "device=cpu",
            f"output_dir={out}", *extra]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_id(path):
    return {r["id"]: [(c["text"], c["answer"], c["correct"], c["verified"], round(c["score"], 6))
                      for c in r["candidates"]]
            for r in _lines(path)}


@pytest.fixture(scope="module")
def full_run(tiny_ckpt, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("full")
    assert run_module.main(_args(tiny_ckpt, out, "progress=false")) == 0
    return out


def test_full_run_writes_outputs(full_run, tiny_ckpt):  # noqa: F811
    results = _lines(full_run / "results.jsonl")
    assert len(results) == LIMIT and len({r["id"] for r in results}) == LIMIT
    for r in results:
        assert {"id", "prompt", "reference", "candidates", "selected"} <= set(r)
        assert len(r["candidates"]) == SAMPLES
        for c in r["candidates"]:
            assert {"text", "answer", "correct", "verified", "score"} <= set(c)
        assert set(r["selected"]) == {"majority", "verifier", "confidence"}
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert {"task", "model", "steps", "samples", "problems", "executor", "workers", "device", "wall_s",
            "accuracy", "throughput"} <= set(metrics)
    assert (metrics["task"], metrics["model"], metrics["steps"], metrics["samples"], metrics["problems"]) == \
        ("countdown", tiny_ckpt, 4, SAMPLES, LIMIT)
    assert (metrics["executor"], metrics["workers"], metrics["device"]) == ("local", 1, "cpu")
    kinds = ("pass", "maj", "verified", "confidence")
    assert {f"{kind}@{k}" for kind in kinds for k in (1, 2, 4)} <= set(metrics["accuracy"])
    assert {"samples_per_s", "tokens_per_s", "forward_passes"} <= set(metrics["throughput"])
    # 3 batches of 8 rows, at most steps + 1 network calls each
    assert 3 <= metrics["throughput"]["forward_passes"] <= 3 * 5
    png = full_run / "accuracy_vs_samples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_and_progress_are_printed(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    assert run_module.main(_args(tiny_ckpt, tmp_path, "limit=2", "plot=false")) == 0
    captured = capsys.readouterr()
    assert "| k | pass@k | maj@k | verified@k | confidence@k |" in captured.out
    assert "2/2" in captured.err  # the tqdm bar
    assert not (tmp_path / "accuracy_vs_samples.png").exists()


def test_resume_after_kill_equals_uninterrupted_run(full_run, tiny_ckpt, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "killed"
    assert run_module.main(_args(tiny_ckpt, out, "progress=false")) == 0
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed while writing line 3

    seen = []
    original = Search.generate_problems

    def spy(self, problems, n):
        seen.extend(p.id for p in problems)
        return original(self, problems, n)

    monkeypatch.setattr(Search, "generate_problems", spy)
    assert run_module.main(_args(tiny_ckpt, out, "progress=false")) == 0
    done = [r["id"] for r in _lines(path)]
    assert sorted(seen) == sorted(done[2:]) and len(seen) == LIMIT - 2  # only the lost problems were redone
    assert sorted(done) == sorted(set(done)) and len(done) == LIMIT  # each id exactly once
    assert _by_id(path) == _by_id(full_run / "results.jsonl")
    resumed = json.loads((out / "metrics.json").read_text())
    full = json.loads((full_run / "metrics.json").read_text())
    assert resumed["accuracy"] == full["accuracy"]

    # a run after completion does no new work and changes nothing
    seen.clear()
    before = path.read_text()
    assert run_module.main(_args(tiny_ckpt, out, "progress=false")) == 0
    assert seen == [] and path.read_text() == before
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == full["accuracy"]


def test_rerun_with_other_samples_is_one_line_error(full_run, tiny_ckpt, capsys):  # noqa: F811
    before = (full_run / "results.jsonl").read_text()
    assert run_module.main(_args(tiny_ckpt, full_run, "progress=false", "samples=8")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "samples" in err
    assert (full_run / "results.jsonl").read_text() == before


@pytest.mark.parametrize("override,needle", [
    ("task=nope", "countdown, gsm8k, sudoku, wordproblems"),  # lists the available tasks
    ("model=/no/such/dir", "/no/such/dir"),
    ("samples=-1", "samples"),
    ("nosuchkey=1", "nosuchkey"),
    ("executor=bogus", "executor"),
    ("limit=-3", "limit"),
    ("sampler.steps=0", "steps"),
    ("stop_round=0", "stop_round"),
    ("stop_round=1 stop_fill=maybe", "stop_fill"),
    ("sampler.head_tokens=3", "head_temperature"),
    ("sampler.window=2", "remasking=prefix"),  # the tiny student decodes ancestrally
    ("sampler.window=0", "sampler.window"),
    ("sampler.stratify=13", "sampler.stratify"),
    ("seed=abc", "seed='abc' must be an integer"),
    ("sampler.temperature=nan", "sampler.temperature=nan must be a finite number"),
    ("sampler.temperature=inf", "sampler.temperature=inf must be a finite number"),
    ("sampler.head_tokens=2 sampler.head_temperature=inf", "sampler.head_temperature=inf"),
    ("limit=0", "limit=0 must be a positive integer"),
    ("samples=100000000000", "samples=100000000000 is over 100000 per problem"),
])
def test_bad_overrides_are_one_line_errors(override, needle, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    assert run_module.main(_args(tiny_ckpt, tmp_path / "out", "progress=false", *override.split())) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert needle in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_verify_and_stop_keeps_the_full_runs_first_candidates_and_resumes(full_run, tiny_ckpt, tmp_path, monkeypatch):  # noqa: F811
    # a scripted verifier (the tiny random model rarely writes a valid expression): a
    # candidate "verifies" when its text has an even length
    from tasks.countdown import CountdownTask

    monkeypatch.setattr(CountdownTask, "verify", lambda self, problem, text: len(text) % 2 == 0)
    out = tmp_path / "stop"
    assert run_module.main(_args(tiny_ckpt, out, "progress=false", "stop_round=1")) == 0
    full, stopped = _by_id(full_run / "results.jsonl"), _lines(out / "results.jsonl")
    drawn = []
    for r in stopped:
        texts = [c["text"] for c in r["candidates"]]
        first = next((i for i, t in enumerate(texts) if len(t) % 2 == 0), None)
        # the full run's first candidates, up to the first verified one (or all SAMPLES)
        assert texts == [c[0] for c in full[r["id"]]][: len(texts)]
        assert len(texts) == (SAMPLES if first is None else first + 1)
        drawn.append(len(texts))
    assert min(drawn) < SAMPLES  # the scripted verifier did stop some problems early
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["round_size"] == 1 and metrics["samples_drawn"]["mean"] == pytest.approx(sum(drawn) / LIMIT)
    assert not (out / "accuracy_vs_samples.png").exists()
    # the same output_dir without stop_round is another run: refused, nothing overwritten
    assert run_module.main(_args(tiny_ckpt, out, "progress=false")) == 2
    # resumed with stop_round: nothing to redo, same results
    assert run_module.main(_args(tiny_ckpt, out, "progress=false", "stop_round=1")) == 0
    assert _lines(out / "results.jsonl") == stopped


def test_filled_rounds_from_the_command_line_keep_the_full_runs_first_candidates(full_run, tiny_ckpt, tmp_path):  # noqa: F811
    out = tmp_path / "filled"
    assert run_module.main(_args(tiny_ckpt, out, "progress=false", "stop_round=1", "stop_on=majority",
                                 "stop_fill=true")) == 0
    full = _by_id(full_run / "results.jsonl")
    for r in _lines(out / "results.jsonl"):
        assert [c["text"] for c in r["candidates"]] == [c[0] for c in full[r["id"]]][: len(r["candidates"])]
    assert json.loads((out / "metrics.json").read_text())["stop_fill"] is True


def test_stratified_first_tokens_from_the_command_line(full_run, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    out, plain = tmp_path / "stratified", tmp_path / "plain"
    for d, extra in [(out, ["sampler.stratify=2"]), (plain, [])]:
        assert run_module.main(_args(tiny_ckpt, d, "progress=false", *extra)) == 0
        said_first_k = "first k candidates" in capsys.readouterr().out
        assert said_first_k == bool(extra)  # the summary says which candidates @k counts
    assert json.loads((out / "metrics.json").read_text())["sampler"]["stratify"] == 2
    assert "stratify" not in json.loads((plain / "metrics.json").read_text())["sampler"]
    stratified, independent = _by_id(out / "results.jsonl"), _by_id(plain / "results.jsonl")
    assert stratified.keys() == independent.keys() and stratified != independent
    # a resumed run with the same option redoes nothing
    assert run_module.main(_args(tiny_ckpt, out, "progress=false", "sampler.stratify=2")) == 0
    assert _by_id(out / "results.jsonl") == stratified


def test_stop_on_a_settled_majority_from_the_command_line(full_run, tiny_ckpt, tmp_path):  # noqa: F811
    out = tmp_path / "majority"
    assert run_module.main(_args(tiny_ckpt, out, "progress=false", "stop_round=1", "stop_on=majority")) == 0
    full = _by_id(full_run / "results.jsonl")
    for r in _lines(out / "results.jsonl"):
        assert [c["text"] for c in r["candidates"]] == [c[0] for c in full[r["id"]]][: len(r["candidates"])]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stop_on"] == "majority" and metrics["stop_confidence"] is None
    assert {"majority", "verified"} == set(metrics["accuracy"])


@pytest.mark.parametrize("overrides,needle", [
    (["task=gsm8k", "task.path={data}"], "stop_on=majority"),  # no verifier to stop on
    (["stop_on=vibes"], "stop_on"),
    (["stop_confidence=0.9"], "stop_confidence"),  # goes with stop_on=majority
    (["stop_on=majority", "stop_confidence=1.5"], "stop_confidence"),
])
def test_bad_stopping_rules_are_one_line_errors(overrides, needle, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "gsm8k"  # one GSM8K-format problem: the task loads, and has no verifier
    data.mkdir()
    (data / "test.jsonl").write_text(json.dumps({"question": "1 + 2?", "answer": "1 + 2 = 3\n#### 3"}) + "\n")
    code = run_module.main(_args(tiny_ckpt, tmp_path, "progress=false", "stop_round=4",
                                 *[o.format(data=data) for o in overrides]))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "results.jsonl").exists()


def test_missing_gsm8k_path_is_one_line_error(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    code = run_module.main(["task=gsm8k", "task.path=/nonexistent", f"model={tiny_ckpt}", f"output_dir={tmp_path}",
                            "progress=false"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert "/nonexistent" in err


def test_a_model_of_another_task_is_a_one_line_error(tmp_path, capsys):
    from sdtt_search.run import main

    code = main(["task=sudoku", "model=gsm8k-sdtt", "samples=2", "limit=1", f"output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "trained for task 'gsm8k'" in err


def test_fewer_steps_than_blocks_widens_the_blocks_unless_a_block_length_is_given():
    from types import SimpleNamespace

    from sdtt_search.cli import compose
    from sdtt_search.diffusion import SamplerConfig

    model = SimpleNamespace(gen_length=25, default_sampler=lambda: SamplerConfig(
        method="confidence", steps=25, block_length=1, gen_length=25))
    widened = run_module.sampler_from(compose("run", ["sampler.steps=4"]), model)
    assert (widened.steps, widened.block_length) == (4, 7)  # one step per block of ceil(25 / 4)
    kept = run_module.sampler_from(compose("run", ["sampler.steps=25"]), model)
    assert kept.block_length == 1
    explicit = run_module.sampler_from(compose("run", ["sampler.steps=4", "sampler.block_length=5"]), model)
    assert explicit.block_length == 5  # as asked (the sampler then says steps < blocks)


def test_the_cli_keeps_a_models_recorded_decoding_unless_asked():
    """A checkpoint's recorded threshold, remasking order and temperature survive the
    run config's defaults (a tail-distilled student decodes left to right: overriding
    that with low-confidence order broke it); explicit values still win."""
    from types import SimpleNamespace

    from sdtt_search.cli import compose
    from sdtt_search.diffusion import SamplerConfig

    recorded = SamplerConfig(method="confidence", steps=4, gen_length=12, threshold=0.9, remasking="left_to_right",
                             temperature=0.7, cache=False)
    model = SimpleNamespace(gen_length=12, default_sampler=lambda: recorded)
    kept = run_module.sampler_from(compose("run", []), model)
    assert kept == recorded
    asked = run_module.sampler_from(compose("run", ["sampler.remasking=random", "sampler.temperature=1.0"]), model)
    assert (asked.remasking, asked.temperature, asked.threshold) == ("random", 1.0, 0.9)
    headed = run_module.sampler_from(compose("run", ["sampler.head_tokens=3", "sampler.head_temperature=1.5"]), model)
    assert (headed.head_tokens, headed.head_temperature, headed.temperature) == (3, 1.5, 0.7)
    windowed = run_module.sampler_from(compose("run", ["sampler.remasking=prefix", "sampler.window=2"]), model)
    assert (windowed.window, windowed.remasking, windowed.threshold) == (2, "prefix", 0.9)


def test_a_cascade_from_the_command_line_passes_on_only_the_unverified_problems(full_run, tiny_ckpt, tmp_path,  # noqa: F811
                                                                               monkeypatch):
    from ar_fixtures import tiny_ar
    from tasks.countdown import CountdownTask

    # a scripted verifier: a candidate "verifies" when its text length is a multiple of 5
    monkeypatch.setattr(CountdownTask, "verify", lambda self, problem, text: len(text) % 5 == 0)
    tiny_ar(tmp_path / "ar")
    out = tmp_path / "cascade"
    cascade = ("progress=false", "stop_round=2", f"fallback.model={tmp_path / 'ar'}", "fallback.samples=3",
               "fallback.round=1", "ar_backend=transformers")
    assert run_module.main(_args(tiny_ckpt, out, *cascade)) == 0
    full = _by_id(full_run / "results.jsonl")
    stages = []
    for r in _lines(out / "results.jsonl"):
        first, second = r["stage_samples"]
        texts = [c["text"] for c in r["candidates"]]
        assert len(texts) == first + second
        # stage 1 is verify-and-stop with the diffusion model: the full run's first candidates
        assert texts[:first] == [c[0] for c in full[r["id"]]][:first]
        solved_first = any(len(t) % 5 == 0 for t in texts[:first])
        assert second == 0 if solved_first else (first == SAMPLES and 1 <= second <= 3)
        if second:  # the AR stage stops at its first verified candidate, at most 3
            lengths = [len(t) % 5 == 0 for t in texts[first:]]
            assert lengths.index(True) == second - 1 if True in lengths else second == 3
        stages.append(second > 0)
    assert any(stages) and not all(stages)  # some problems reached the AR stage, some did not
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["model"] for s in metrics["stages"]] == [str(tiny_ckpt), str(tmp_path / "ar")]
    assert [(s["samples"], s["round_size"]) for s in metrics["stages"]] == [(SAMPLES, 2), (3, 1)]
    assert [s["backend"] for s in metrics["stages"]] == ["sdtt-search", "transformers"]
    assert metrics["stages"][1]["reached"] == pytest.approx(sum(stages) / LIMIT)
    assert metrics["samples"] == SAMPLES + 3 and metrics["problems"] == LIMIT
    # resumed: nothing to redo; another fallback is another run (refused)
    before = _lines(out / "results.jsonl")
    assert run_module.main(_args(tiny_ckpt, out, *cascade)) == 0
    assert _lines(out / "results.jsonl") == before
    assert run_module.main(_args(tiny_ckpt, out, *cascade[:-2], "fallback.round=3", "ar_backend=transformers")) == 2


def test_a_cascade_of_one_student_into_itself_with_a_hotter_head(tiny_ckpt, tmp_path, monkeypatch):  # noqa: F811
    from tasks.countdown import CountdownTask

    # nothing verifies, so every problem reaches the second stage: the same model, its first 2 tokens greedy
    monkeypatch.setattr(CountdownTask, "verify", lambda self, problem, text: False)
    out = tmp_path / "self"
    assert run_module.main(_args(tiny_ckpt, out, "progress=false", "stop_round=2", f"fallback.model={tiny_ckpt}",
                                 "fallback.samples=4", "fallback.sampler.head_tokens=2",
                                 "fallback.sampler.head_temperature=0")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    first, second = metrics["stages"]
    assert (first["sampler"]["head_tokens"], second["sampler"]["head_tokens"]) == (0, 2)
    assert second["sampler"]["head_temperature"] == 0 and second["reached"] == 1.0
    for r in _lines(out / "results.jsonl"):
        n_first, n_second = r["stage_samples"]
        heads = {c["text"][:1] for c in r["candidates"][n_first:]}
        assert n_second == 4 and len(heads) == 1  # a greedy head: every second-stage candidate starts alike
    assert run_module.main(_args(tiny_ckpt, tmp_path / "bad", "progress=false", "stop_round=2",
                                 f"fallback.model={tiny_ckpt}", "fallback.sampler.head_tokens=2")) == 2


@pytest.mark.parametrize("overrides,needle", [
    (["fallback.model=countdown-cd3-ar"], "stop_round"),  # a cascade stops on a verified candidate
    (["fallback.model=countdown-cd3-ar", "stop_round=2", "stop_on=majority"], "stop_confidence"),
    (["fallback.model=countdown-cd3-ar", "stop_round=2", "fallback.samples=0"], "fallback.samples"),
    (["fallback.model=countdown-cd3-ar", "stop_round=2", "fallback.round=-1"], "fallback.round"),
])
def test_bad_cascades_are_one_line_errors(overrides, needle, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    assert run_module.main(_args(tiny_ckpt, tmp_path, "progress=false", *overrides)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "results.jsonl").exists()


def test_a_majority_cascade_from_the_command_line_passes_on_the_unsure_problems(tiny_ckpt, tmp_path,  # noqa: F811
                                                                               monkeypatch):
    from ar_fixtures import tiny_ar
    from tasks.countdown import CountdownTask

    # scripted answers (the tiny random model rarely writes one): the text's length mod 3
    monkeypatch.setattr(CountdownTask, "extract_answer", lambda self, text: str(len(text) % 3))

    from sdtt_search.search.results import Candidate
    from sdtt_search.search.stopping import StopRule

    tiny_ar(tmp_path / "ar")
    out = tmp_path / "cascade"
    assert run_module.main(_args(tiny_ckpt, out, "progress=false", "stop_round=1", "stop_on=majority",
                                 "stop_confidence=0.8", f"fallback.model={tmp_path / 'ar'}", "fallback.samples=3",
                                 "ar_backend=transformers")) == 0
    rule = StopRule(1, "majority", 0.8)
    reached = []
    for r in _lines(out / "results.jsonl"):
        first, second = r["stage_samples"]
        mine = [Candidate(**c) for c in r["candidates"][:first]]
        sure = rule.done(mine, 0)
        # the first model stops once sure (then nothing is passed on) or at its cap
        assert (second == 0) == sure and (sure or first == SAMPLES)
        reached.append(second > 0)
    assert any(reached) and not all(reached)  # some problems were sure, some went on
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages"][1]["reached"] == pytest.approx(sum(reached) / LIMIT)
    assert [s["on"] for s in metrics["stages"]] == ["majority", "majority"] and "majority" in metrics["accuracy"]


def test_output_dir_that_is_a_file_or_unwritable_is_a_one_line_error(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert run_module.main(_args(tiny_ckpt, afile, "progress=false")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"output_dir={afile} is a file" in err and afile.read_text() == "keep me"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if (locked / "probe").parent.stat().st_mode & 0o200 or __import__("os").geteuid() == 0:
            target = afile / "sub"  # root may write anywhere: a path under a file cannot be made by anyone
        else:
            target = locked / "out"
        assert run_module.main(_args(tiny_ckpt, target, "progress=false")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"output_dir={target}" in err
    finally:
        locked.chmod(0o700)


def test_broken_checkpoint_meta_is_a_one_line_error_naming_the_file(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    import shutil

    for meta_change, needle in ((lambda c: c.update(meta=5), '"meta" must be a mapping'),
                                (lambda c: c["meta"].update(task="countdown"), 'meta.task must be a mapping'),
                                (lambda c: c["meta"].update(sampling_steps=-1), '"meta.sampling_steps"')):
        ckpt = tmp_path / "ckpt"
        shutil.rmtree(ckpt, ignore_errors=True)
        shutil.copytree(tiny_ckpt, ckpt)
        config = json.loads((ckpt / "config.json").read_text())
        meta_change(config)
        (ckpt / "config.json").write_text(json.dumps(config))
        assert run_module.main(_args(ckpt, tmp_path / "out", "progress=false")) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1 and needle.replace('"', "") in err.replace('"', "")
        assert str(ckpt) in err and "config.json" in err


def test_a_prompt_longer_than_the_context_is_refused_unread(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"input": "1" * 17 + ",2,3,4,10", "output": ""}) + "\n")
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({"input": ",".join(["12"] * 3) + ",10", "output": ""}) + "\n")
    from sdtt_search.search.engine import check_prompt

    class Model:
        name, context_length = "m", 128

        class tokenizer:  # noqa: N801 - stands in for a tokenizer object
            calls = 0

            @classmethod
            def encode(cls, text):
                cls.calls += 1
                return list(text)

    with pytest.raises(ValueError, match=r"problem p1: its prompt has 50000000 characters, far more than the 116 "):
        check_prompt(Model, "p1", "x" * 50_000_000, 12)
    assert Model.tokenizer.calls == 0  # refused before tokenizing
    with pytest.raises(ValueError, match=r"problem p2: its prompt has 117 tokens, more than the 116 model m has"):
        check_prompt(Model, "p2", "x" * 117, 12)
    check_prompt(Model, "p3", "x" * 116, 12)


def test_nan_scores_are_written_as_json_null_with_a_warning(tiny_ckpt, tmp_path, monkeypatch, capsys):  # noqa: F811
    original = Search._score

    def nan_score(self, *args, **kwargs):
        candidate = original(self, *args, **kwargs)
        candidate.score = float("nan")
        return candidate

    monkeypatch.setattr(Search, "_score", nan_score)
    assert run_module.main(_args(tiny_ckpt, tmp_path, "progress=false", "limit=2")) == 0
    assert "not finite numbers" in capsys.readouterr().err
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"results.jsonl holds {c}")) for line in lines]
    assert all(c["score"] is None for r in records for c in r["candidates"])
    json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))


def test_throughput_after_a_kill_counts_the_time_of_the_killed_run(tiny_ckpt, tmp_path, monkeypatch):  # noqa: F811
    """The sampling time is saved with every results line, so a run killed after some
    problems and resumed reports the time both runs spent (not the resumed part's alone)."""
    import time

    original = Search.generate_problems

    def slow(self, problems, n):
        time.sleep(0.3)
        return original(self, problems, n)

    monkeypatch.setattr(Search, "generate_problems", slow)
    out = tmp_path / "run"

    class Killed(Exception):
        pass

    from sdtt_search.search.store import ResultStore

    add = ResultStore.add

    def add_then_die(self, result):
        add(self, result)
        if len(self.results) == 4:
            raise Killed  # killed right after the 4th line: its time must already be on disk

    monkeypatch.setattr(ResultStore, "add", add_then_die)
    with pytest.raises(Killed):
        run_module.run(compose("run", _args(tiny_ckpt, out, "progress=false")))
    first = json.loads((out / "run_state.json").read_text())["wall_s"]
    assert first >= 2 * 0.3  # two batches of two problems
    monkeypatch.setattr(ResultStore, "add", add)
    assert run_module.main(_args(tiny_ckpt, out, "progress=false")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["wall_s"] >= first + 0.3 and metrics["wall_s"] < first + 30
    assert metrics["throughput"]["samples_per_s"] <= LIMIT * SAMPLES / (3 * 0.3)


def test_resume_refuses_results_of_other_weights_under_the_same_name(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    """A model is matched by its files' fingerprint, not its name: retrained weights
    in the same directory cannot be mixed with the old weights' results."""
    import shutil

    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    out = tmp_path / "out"
    assert run_module.main(_args(ckpt, out, "progress=false", "limit=2")) == 0
    assert json.loads((out / "run_config.json").read_text())["model_fingerprint"]
    state = load_file(str(ckpt / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name] + 1e-3  # "retrained": same name, same shapes, other weights
    save_file(state, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    assert run_module.main(_args(ckpt, out, "progress=false", "limit=4")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results of other weights under the same model name" in err
    # an older run's config without a fingerprint still resumes
    config = json.loads((out / "run_config.json").read_text())
    config.pop("model_fingerprint")
    (out / "run_config.json").write_text(json.dumps(config))
    assert run_module.main(_args(ckpt, out, "progress=false", "limit=2")) == 0


def test_a_first_run_says_what_it_ran_what_the_columns_mean_and_what_it_wrote(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    assert run_module.main(_args(tiny_ckpt, tmp_path, "limit=2", "progress=false")) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tiny_ckpt} on countdown (test split, 2 problems x {SAMPLES} samples")
    assert "maj@k: the most frequent answer" in out and "verified@k: the verifier's pick" in out
    assert f"written: {tmp_path / 'results.jsonl'}, {tmp_path / 'metrics.json'}, {tmp_path / 'accuracy_vs_samples.png'}" in out
    assert run_module.main(_args(tiny_ckpt, tmp_path, "limit=2", "progress=false")) == 0
    assert f"resuming {tmp_path}: 2 of 2 problems already done" in capsys.readouterr().err


def test_help_is_a_usage_line_and_described_options(capsys):
    assert run_module.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m sdtt_search.run")
    assert "  samples=16" in text and "candidates per problem" in text and "sampler.<key>=..." in text
    assert "task=<countdown|gsm8k|sudoku|wordproblems>" in text
    assert "\ntask:\n" not in text  # not the bare composed YAML


def test_a_progress_bar_into_a_pipe_is_not_a_line_per_problem(tiny_ckpt, tmp_path):  # noqa: F811
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sdtt_search.run", *_args(tiny_ckpt, tmp_path, "batch_size=4")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    updates = proc.stderr.replace("\r", "\n").count(f"/{LIMIT} [")
    assert updates <= 3, proc.stderr  # six problems, three batches: at most the first and last states


def test_the_plot_axis_fits_the_data():
    from sdtt_search.search.report import fitted_range

    assert fitted_range([0.96, 1.0]) == pytest.approx((0.94, 1.0))
    assert fitted_range([0.2, 0.6]) == pytest.approx((0.168, 0.632))
    assert fitted_range([0.0, 0.0]) == (0.0, 0.02)
