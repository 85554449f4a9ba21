"""How well can ANY per-position student decode B tokens per step? The oracle bound.

A few-step masked-diffusion student commits a block of B tokens in one network call,
each drawn independently from its own distribution. The best such a student can do
(and what SDTT's per-position divergence drives it to) is the *exact marginals* of
its teacher: p(x_j | prefix) for each position j of the block, the earlier positions
of the block summed out. This script decodes with those oracle marginals of an AR
teacher (the AR twin: its marginals are estimated without bias by averaging its
conditionals p(x_j | prefix, x_<j) over M sampled continuations of the block, i.e.
Rao-Blackwellised Monte Carlo) and scores the answers. Blocks of 1 are the teacher
itself; the drop at B = 2, 4, 7 is the factorisation error no per-position student
can remove, however well distilled.

    python -m benchmarks.factorized_ceiling --model countdown-cd3-ar --problems 200 --blocks 1 2 4 7

Prints a markdown table (pass@1 with its standard error per block length).
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from distill.setup import build_task, eval_problems
from sdtt_search.ar.checkpoint import load_ar_pretrained
from sdtt_search.diffusion.batching import build_batch
from sdtt_search.machine import describe
from sdtt_search.zoo import resolve_model_path


@torch.no_grad()
def continue_rows(model, seqs: torch.Tensor, attention: torch.Tensor, n_new: int, samples: int, eos_id: int,
                  pad_id: int, temperature: float, generator: torch.Generator):
    """Continue each left-padded row of ``seqs`` [N, L] ``samples`` times by ``n_new``
    tokens of the AR model (after EOS only PAD, the completion layout), with a KV cache.

    Returns (conditionals [N * samples, n_new, V] float64: the model's distribution at
    each new position given that continuation's earlier tokens; tokens [N * samples, n_new]).
    """
    from sdtt_search.model.llama import KVCache

    x = seqs.repeat_interleave(samples, 0)
    att = attention.repeat_interleave(samples, 0)
    cache = KVCache(len(model.model.layers))
    done = torch.zeros(x.shape[0], dtype=torch.bool)
    probs, toks = [], []
    for _ in range(n_new):
        start = cache.length
        hidden = model.model.forward_cached(x, att, start, x.shape[1], cache)
        cache.extend(x.shape[1] - start)
        p = torch.softmax(model.lm_head(hidden[:, -1]).double() / temperature, dim=-1)
        p[done] = 0.0
        p[done, pad_id] = 1.0
        tok = torch.multinomial(p, 1, generator=generator).squeeze(-1)
        done |= tok == eos_id
        probs.append(p)
        toks.append(tok)
        x = torch.cat([x, tok[:, None]], 1)
        att = torch.cat([att, torch.ones_like(att[:, :1])], 1)
    return torch.stack(probs, 1), torch.stack(toks, 1)


def _batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded [N, L] ids and attention mask of token lists (``build_batch``'s
    layout without its generated column)."""
    batch = build_batch(rows, 1, pad_id=pad_id, mask_id=pad_id)
    return batch.x[:, :-1], batch.attention_mask[:, :-1].bool()


def _units(ids: list[int], digit_ids: set[int], stop_ids: set[int]) -> list[tuple[int, ...]]:
    """Split token ids into units, a maximal run of digits or one other token, up to
    and including the first EOS / PAD."""
    out: list[tuple[int, ...]] = []
    for t in ids:
        if t in digit_ids and out and out[-1][-1] in digit_ids:
            out[-1] = out[-1] + (t,)
        else:
            out.append((t,))
        if t in stop_ids:
            break
    return out


def _unit_j(u: list[tuple[int, ...]], j: int, stop_ids: set[int], pad_id: int) -> tuple[int, ...] | None:
    """Unit j of a continuation: PAD once it has stopped, None if it is not complete."""
    for unit in u[:j]:
        if unit[-1] in stop_ids:
            return (pad_id,)
    if j < len(u) - 1 or (j < len(u) and u[j][-1] in stop_ids):
        return u[j]
    return None


@torch.no_grad()
def decode(model, tokenizer, prompts: list[str], gen_length: int, block: int, samples: int, temperature: float,
           seed: int, units: bool = False) -> tuple[list[str], float]:
    """Texts decoded ``block`` tokens (or, with ``units``, whole numbers / symbols) per
    step, each drawn independently from its oracle marginal; and the mean steps taken."""
    g = torch.Generator().manual_seed(seed)
    ids = [tokenizer.encode(p) for p in prompts]
    stop_ids = {tokenizer.eos_id, tokenizer.pad_id}
    digit_ids = {tokenizer.encode(str(d))[0] for d in range(10)}
    generated: list[list[int]] = [[] for _ in ids]
    steps = [0] * len(ids)
    while True:
        live = [i for i, row in enumerate(generated) if len(row) < gen_length and not (set(row) & stop_ids)]
        if not live:
            break
        seqs, attention = _batch([ids[i] + generated[i] for i in live], tokenizer.pad_id)
        n = samples if (block > 1 or units) else 1
        if not units:
            probs, _ = continue_rows(model, seqs, attention, block, n, tokenizer.eos_id, tokenizer.pad_id,
                                     temperature, g)
            marg = probs.view(len(live), n, block, -1).mean(1)  # Rao-Blackwellised marginals
            drawn = torch.multinomial(marg.view(-1, marg.shape[-1]), 1, generator=g).view(len(live), block).tolist()
        else:
            # numbers have at most 4 digits: enough tokens for `block` whole units and the next one's start
            _, toks = continue_rows(model, seqs, attention, 5 * block + 1, n, tokenizer.eos_id, tokenizer.pad_id,
                                    temperature, g)
            toks = toks.view(len(live), n, -1).tolist()
            drawn = []
            for r in range(len(live)):
                per_sample = [_units(t, digit_ids, stop_ids) for t in toks[r]]
                row: list[int] = []
                for j in range(block):  # unit j drawn from its empirical marginal, independently of the others
                    options = [o for o in (_unit_j(u, j, stop_ids, tokenizer.pad_id) for u in per_sample) if o]
                    pick = options[int(torch.randint(len(options), (1,), generator=g))] if options else (tokenizer.pad_id,)
                    row.extend(pick)
                    if pick[-1] in stop_ids:
                        break
                drawn.append(row)
        for r, i in enumerate(live):
            generated[i].extend(drawn[r])
            steps[i] += 1
    texts = []
    for row in generated:
        cut = row[:gen_length]
        for stop in stop_ids:
            if stop in cut:
                cut = cut[:cut.index(stop)]
        texts.append(tokenizer.decode(cut))
    return texts, sum(steps) / len(steps)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="countdown-cd3-ar", help="an AR twin (zoo name or directory)")
    p.add_argument("--problems", type=int, default=200)
    p.add_argument("--split", default="test")
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 7])
    p.add_argument("--samples", type=int, default=32, help="continuations per row that estimate the marginals")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--units", action="store_true",
                   help="steps commit whole numbers / symbols instead of characters (a number-level tokenizer's bound)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    loaded = load_ar_pretrained(resolve_model_path(args.model))
    model, tokenizer, meta = loaded.model.eval(), loaded.tokenizer, loaded.meta
    task = build_task(meta["task"])
    problems = eval_problems(task, args.split, args.problems)
    gen_length = int(meta["gen_length"])
    print(f"{args.model}: {len(problems)} {args.split} problems, gen_length {gen_length}, temperature "
          f"{args.temperature}, marginals from {args.samples} continuations; {describe()}\n")
    unit = "units (numbers / symbols)" if args.units else "tokens"
    print(f"| {unit} per step | steps until EOS (mean) | pass@1 (± se) | seconds |")
    print("|---|---|---|---|")
    for block in args.blocks:
        start = time.perf_counter()
        correct, steps = 0, 0.0
        for lo in range(0, len(problems), args.batch):
            chunk = problems[lo:lo + args.batch]
            texts, mean_steps = decode(model, tokenizer, [task.format_prompt(q) for q in chunk], gen_length, block,
                                       args.samples, args.temperature, args.seed + lo, units=args.units)
            steps += mean_steps * len(chunk)
            correct += sum(task.is_correct(q, t) for q, t in zip(chunk, texts))
        acc = correct / len(problems)
        se = math.sqrt(acc * (1 - acc) / len(problems))
        print(f"| {block} | {steps / len(problems):.1f} | {acc:.3f} ± {se:.3f} | {time.perf_counter() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
