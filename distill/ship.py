"""Put a trained checkpoint into the package's zoo with a measured MODEL.md card.

    python -m distill.ship runs/sdtt-sudoku/round-2-steps-4 --name sudoku4-sdtt-4 --samples 64 --limit 500

``--store-dtype float16`` halves the zoo's bytes: the weights are stored in float16 and every
loader casts them back to float32 (the card's numbers are measured on the stored weights).
The checkpoint is re-saved under ``sdtt_search/zoo/<name>/``, evaluated with the
search engine on the task's test split (the same code ``sdtt_search.run`` uses),
and the card records data, size, steps, training time, machine and the numbers,
with the command that reproduces them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sdtt_search.ar import is_ar_checkpoint, load_ar_pretrained, save_ar_pretrained
from sdtt_search.checkpoint import load_pretrained, save_pretrained
from sdtt_search.cli import task_from_config
from sdtt_search.diffusion import SamplerConfig
from sdtt_search.loading import load_model
from sdtt_search.machine import describe
from sdtt_search.search.engine import Search
from sdtt_search.zoo import ZOO_DIR


def evaluate(model_dir: Path, samples: int, limit: int, batch_size: int = 256) -> dict:
    model = load_model(model_dir)
    task = task_from_config(model.meta["task"])
    problems = task.problems(split="test", limit=limit)
    start = time.perf_counter()
    result = Search(model, task, model.default_sampler(), batch_size=batch_size).best_of_n(problems, samples)
    result.metrics["wall_s"] = time.perf_counter() - start
    if getattr(model, "backend_name", None):
        result.metrics["backend"] = model.backend_name
    return result.metrics


DATA_NOTES = {
    "gsm8k": "GSM8K train.jsonl (7,473 problems, calculator annotations stripped; answers longer than the "
             "generated length are skipped); evaluated on test.jsonl",
    "countdown": "generated on the fly by `tasks.countdown` (operands 1-{max_operand}, targets {min_target}-"
                 "{max_target}; the training stream excludes every test and validation problem); evaluated on the "
                 "generated test split",
    "sudoku": "generated on the fly by `tasks.sudoku` (unique-solution puzzles; the training stream excludes every "
              "test and validation puzzle); evaluated on the generated test split",
    "wordproblems": "generated on the fly by `tasks.wordproblems` ({min_ops}-{max_ops} operations; the training stream "
                    "excludes every test and validation problem); evaluated on the generated test split",
}


def describe_sampler(sampler: SamplerConfig, gen_length) -> str:
    """One line for the card: how the model decodes by default."""
    if sampler.method == "confidence":
        blocks = f", blocks of {sampler.block_length} left to right" if sampler.block_length else ""
        if sampler.threshold is not None and sampler.remasking == "prefix":
            return (f"left to right, each step committing the leftmost masked token and the unbroken run of tokens "
                    f"drawn with probability >= {sampler.threshold} after it (at most {sampler.steps} steps; the last "
                    f"commits the rest){blocks}, {gen_length} generated tokens")
        if sampler.threshold is not None:  # steps is a budget: the last allowed step commits what is left
            return (f"{sampler.remasking.replace('_', '-')} remasking with confidence threshold {sampler.threshold} "
                    f"(every drawn token at or above it, at least one per step, at most {sampler.steps} steps)"
                    f"{blocks}, {gen_length} generated tokens")
        return f"{sampler.remasking.replace('_', '-')} remasking, {sampler.steps} steps{blocks}, {gen_length} generated tokens"
    return f"ancestral, {sampler.steps} steps, {gen_length} generated tokens"


def _short(spec) -> str:
    """A zoo name as is; a run directory by its name (its parent's for .../checkpoint)."""
    path = Path(str(spec))
    return path.parent.name if path.name == "checkpoint" and path.parent.name else path.name


def _teacher_note(sdtt: dict) -> str:
    """" (countdown-cd3-ar at temperature 0.5, round-1 student from <dir>)" from what is recorded ("" if nothing)."""
    head = " ".join(filter(None, [_short(sdtt["teacher"]) if sdtt.get("teacher") else "",
                                  f"at temperature {sdtt['teacher_temperature']:g}"
                                  if sdtt.get("teacher_temperature", 1.0) != 1.0 else ""]))
    items = [head,
             f"later rounds' teachers at {sdtt['round_temperature']:g}" if sdtt.get("round_temperature", 1.0) != 1.0 else "",
             f"round-1 student from {_short(sdtt['student_init'])}" if sdtt.get("student_init") else ""]
    items = [i for i in items if i]
    return f" ({', '.join(items)})" if items else ""


def card(name: str, meta: dict, model_cfg: dict, params: int, metrics: dict, samples: int, limit: int, note: str,
         sampler: SamplerConfig | None = None, store_dtype: str = "float32") -> str:
    task = meta["task"]
    acc = metrics["accuracy"]
    opts = " ".join(f"task.options.{k}={v}" for k, v in (task.get("options") or {}).items())
    command = f"python -m sdtt_search.run task={task['name']} {opts} model={name} samples={samples} limit={limit}".replace("  ", " ")
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in acc.items() if k.split("@")[1] in ("1", str(samples)))
    data = DATA_NOTES.get(task["name"], "the task's training pairs")
    if task["name"] == "countdown":  # the range the model was trained on: its options, else the generator's defaults
        from tasks.countdown import CountdownTask

        data = data.format(**{**CountdownTask(n=3).options, **(task.get("options") or {})})
    if task["name"] == "wordproblems":
        from tasks.wordproblems import WordProblemsTask

        data = data.format(**{**WordProblemsTask(test_size=0, validation_size=0).options, **(task.get("options") or {})})
    backend = f", {metrics['backend']} backend" if metrics.get("backend") else ""
    if task["name"] == "gsm8k":
        command += "  (GSM8K data: add task.path=<dir with test.jsonl> or set SDTT_DATA_DIR)"
    sdtt = meta.get("sdtt")
    is_ar = meta.get("kind") == "ar"
    if is_ar:
        lineage = "pretrained from scratch (causal next-token loss); Hugging Face Llama format, loads in transformers and vLLM"
        sampling = f"autoregressive with a KV cache (vLLM or transformers), up to {meta.get('gen_length')} generated tokens"
    else:
        objective = "MDLM NELBO" + (f" with {meta['semi_ar']:.0%} semi-autoregressive rows" if meta.get("semi_ar") else "")
        start = f"from {meta['init_from']}" if meta.get("init_from") else "from scratch"
        layout = ", tail" if (sdtt or {}).get("layout") == "tail" else ", block-wise" if (sdtt or {}).get("semi_ar") else ""
        if (sdtt or {}).get("noise_input"):
            layout += ", noise-conditioned" + (", on-policy" if sdtt.get("on_policy") else "")
        if (sdtt or {}).get("first_column_weight"):
            layout += f", first_column_weight={sdtt['first_column_weight']:g}"
        lineage = (f"SDTT round {sdtt['round']} ({sdtt['divergence']}{layout}) "
                   f"from a {sdtt['teacher_steps']}-step teacher{_teacher_note(sdtt)}, {sdtt['train_step']} distillation steps in all"
                   if sdtt else f"trained {start} ({objective})")
        sampling = describe_sampler(sampler, meta.get("gen_length"))
        if model_cfg.get("attention_block"):
            sampling += (f"; block-causal attention (blocks of {model_cfg['attention_block']} see each other and the past), "
                         "decoded with the exact prefix KV cache")
        elif model_cfg.get("causal"):
            sampling += "; causal attention, decoded with the exact prefix KV cache"
        if model_cfg.get("noise_input"):
            sampling += "; shown each column's sampling uniform (`model.noise_input`)"
    stored = f"; stored in {store_dtype}, loaded as float32" if store_dtype != "float32" else ""
    return f"""# {name}

{note}

| | |
|---|---|
| task | {task['name']} {json.dumps(task.get('options') or {})} |
| kind | {meta.get('kind', 'diffusion')} ({lineage}) |
| parameters | {params / 1e6:.2f}M (hidden {model_cfg['hidden_size']}, {model_cfg['n_layers']} layers, {model_cfg['n_heads']} heads, vocab {model_cfg['vocab_size']}){stored} |
| sampling | {sampling} |
| training | {meta.get('train_steps', '?')} pretraining steps, {meta.get('train_seconds', '?')} s on {meta.get('machine', 'the project CPU machine')} |
| data | {data} |

## Measured ({describe()})

{metrics['problems']} test problems x {samples} samples, temperature {sampler.temperature if sampler else 1.0}{backend} ({metrics['throughput']['samples_per_s']:.1f} samples/s
while other jobs shared the CPU: for speed ratios see `docs/results.md`, measured side by side):

| metric | value |
|---|---|
{rows}

Reproduce: `{command}`
"""


STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def store_weights_as(directory: Path, dtype: str) -> None:
    """Rewrite ``directory/model.safetensors`` with its floating tensors in ``dtype`` (metadata kept).

    Loaders cast floating weights back to float32, so only storage changes; a weight
    float16 cannot hold (|w| > 65504) is an error rather than an inf in the zoo.
    """
    if dtype not in STORE_DTYPES:
        raise ValueError(f"--store-dtype must be one of {sorted(STORE_DTYPES)}, got {dtype!r}")
    path = directory / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    limit = torch.finfo(STORE_DTYPES[dtype]).max
    for name, t in state.items():
        if t.is_floating_point() and t.abs().max().item() > limit:
            raise ValueError(f"{name} has a weight beyond {dtype}'s range ({limit:g}); ship it with --store-dtype float32")
    state = {k: (t.to(STORE_DTYPES[dtype]) if t.is_floating_point() else t).contiguous() for k, t in state.items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)


def _value(text: str):
    """``"1"`` -> 1, ``"0.5"`` -> 0.5, ``"null"`` -> None, anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--name", required=True)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--note", default="")
    parser.add_argument("--sampler", default="", help="record a default decoding, e.g. method=confidence,block_length=1,steps=25")
    parser.add_argument("--store-dtype", default="float32", choices=sorted(STORE_DTYPES),
                        help="dtype the weights are stored in (float16 halves the bytes; they load as float32)")
    args = parser.parse_args(argv)
    is_ar = is_ar_checkpoint(args.checkpoint)
    loaded = load_ar_pretrained(args.checkpoint) if is_ar else load_pretrained(args.checkpoint)
    meta = {**loaded.meta, "machine": loaded.meta.get("machine") or describe()}
    if args.sampler:
        overrides = dict(item.split("=", 1) for item in args.sampler.split(","))
        recorded = {**(meta.get("sampler") or {}), **{k: _value(v) for k, v in overrides.items()}}
        SamplerConfig.from_dict(recorded)  # a bad key or value is a one-line error here
        if "steps" in recorded:  # the step count lives in sampling_steps
            meta["sampling_steps"] = int(recorded.pop("steps"))
        meta["sampler"] = recorded
    # A data path of the training machine means nothing elsewhere: runs pass task.path / $SDTT_DATA_DIR.
    meta["task"] = {k: v for k, v in meta["task"].items() if k != "path"}
    target = ZOO_DIR / args.name
    (save_ar_pretrained if is_ar else save_pretrained)(target, loaded.model, loaded.tokenizer, meta=meta)
    if args.store_dtype != "float32":
        store_weights_as(target, args.store_dtype)
    metrics = evaluate(target, args.samples, args.limit)
    sampler = None if is_ar else load_model(target).default_sampler()
    text = card(args.name, meta, loaded.model.config.to_dict(), loaded.model.num_parameters, metrics, args.samples,
                args.limit, args.note, sampler, store_dtype=args.store_dtype)
    (target / "MODEL.md").write_text(text)
    (target / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
