"""Order search: a beam over which positions a masked diffusion model commits next, and what.

A left-to-right model has one order; a masked diffusion model may commit any masked
position at any step, and which ones it commits first changes what it writes after
(Order-Token Search, arXiv 2601.20339, searches jointly over orders and tokens). Here a
problem's N candidates are the N states of a beam (``Search(strategy="order")``). At each of
the sampler's ``steps`` steps every state commits k positions, k from LLaDA's linear
schedule (``transfer_counts``; within the current block with ``block_length``), and
expands into ``branch`` children from one network call (``model.predict``):

* child 0 commits the k positions whose most likely token is most likely, with those
  tokens (the greedy order);
* child c > 0 draws a token at every masked position at the sampler's temperature and
  commits the k positions whose drawn token's log-probability plus a Gumbel draw is
  highest (another order, other tokens).

A child's score is its parent's plus the log-probabilities of what it commits (the log of
the probability of the path, given the order). Children the task's partial check finds
violated are dropped (all of a state's children kept if every child of every state is);
identical children merge; the N best by score form the next beam. Draws come from
(seed, problem id, the beam's first candidate, step, parent rank, child) alone, so a
problem's candidates do not depend on its batch. The candidates are the final beam, best
first (repeated best-first when fewer than N states survive).
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

from ..checks import is_positive_int
from ..diffusion.commit_rules import transfer_counts
from .particles import group_rows, partial_pieces
from .repair import stop_ids


@dataclass(frozen=True)
class OrderConfig:
    """How order search expands its beam (``Search(strategy="order")``; its width is the
    number of candidates).

    Attributes:
        branch: children of each state at each step (child 0 greedy, the others drawn).
    """

    branch: int = 4

    def __post_init__(self) -> None:
        if not is_positive_int(self.branch):
            raise ValueError(f"order.branch={self.branch!r} must be a positive integer")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expansion_seed(seed: int, problem_id: str, first: int, step: int, parent: int, child: int) -> int:
    """63-bit seed of child ``child`` of the beam state ranked ``parent`` at ``step``."""
    text = f"{seed}|{problem_id}|{first}|order|{step}|{parent}|{child}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def schedule(gen_length: int, steps: int, block_length: int | None) -> list[tuple[int, int, int]]:
    """Per step: (first column of its block, end of its block, positions to commit), LLaDA's
    linear schedule within each block (steps shared out over the blocks)."""
    block = block_length or gen_length
    starts = list(range(0, gen_length, block))
    if steps < len(starts):
        raise ValueError(f"steps={steps} is fewer than the {len(starts)} blocks; use steps >= gen_length / block_length")
    out = []
    for b, lo in enumerate(starts):
        hi = min(lo + block, gen_length)
        block_steps = steps // len(starts) + (1 if b < steps % len(starts) else 0)
        counts = transfer_counts(torch.tensor([hi - lo]), block_steps)[0].tolist()
        out += [(lo, hi, int(k)) for k in counts]
    return out


def expand(logp: torch.Tensor, tokens: list, lo: int, hi: int, k: int, child: int, temperature: float,
           seed: int) -> tuple[list, float]:
    """One child of a state: (its tokens, the log-probability of what it commits).

    Args:
        logp: [G, V] float64 log-probabilities at every generated position.
        tokens: the state's tokens (None = masked); only masked positions in [lo, hi) commit.
    """
    masked = [j for j in range(lo, hi) if tokens[j] is None]
    k = min(k, len(masked))
    if k == 0:
        return list(tokens), 0.0
    rows = logp[masked]  # [M, V]
    if child == 0 or temperature == 0:
        drawn = rows.argmax(-1)
        key = rows.gather(-1, drawn[:, None]).squeeze(-1)
    else:
        gen = torch.Generator().manual_seed(seed)
        gumbel = -torch.log(-torch.log(torch.rand(rows.shape, generator=gen, dtype=torch.float64).clamp(1e-300, 1.0)))
        drawn = (rows / temperature + gumbel).argmax(-1)  # a draw at the temperature (Gumbel-max)
        chosen = rows.gather(-1, drawn[:, None]).squeeze(-1)
        order_noise = -torch.log(-torch.log(torch.rand(len(masked), generator=gen, dtype=torch.float64).clamp(1e-300, 1.0)))
        key = chosen + order_noise  # another order: confident positions first, perturbed
    picks = sorted(torch.argsort(-key, stable=True)[:k].tolist())
    out, gain = list(tokens), 0.0
    for i in picks:
        out[masked[i]] = int(drawn[i])
        gain += float(rows[i, drawn[i]])
    return out, gain


def next_beam(task, problem, tokenizer, children: list[tuple], width: int) -> list[tuple]:
    """The ``width`` best children by score (their third item) that the partial check does
    not find violated (all of them when every one is), identical token lists merged; ties
    keep the order the children were made in."""
    alive = [ch for ch in children if not task.partial_check(problem, *partial_pieces(tokenizer, ch[0])).violated]
    seen, beam = set(), []
    for child in sorted(alive or children, key=lambda ch: -ch[2]):
        if tuple(child[0]) not in seen:
            seen.add(tuple(child[0]))
            beam.append(child)
        if len(beam) == width:
            break
    return beam


def draw_order_search(search, problems: Sequence, prompts: Sequence[str],
                      rows: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
    """``Search._draw`` for ``strategy="order"``: a problem's rows are the width of its beam."""
    model, task, tokenizer = search.model, search.task, search.model.tokenizer
    sampler, branch = search.sampler, search.order.branch
    gen_length = sampler.gen_length or model.gen_length
    groups, stops = group_rows(rows), stop_ids(tokenizer)
    beams = {p: [([None] * gen_length, [0.0] * gen_length, 0.0)] for p in groups}  # (tokens, log-probs, score)
    spent = {p: [0.0, 0.0, 0] for p in groups}  # network calls, seconds, positions run
    for step, (lo, hi, k) in enumerate(schedule(gen_length, sampler.steps, sampler.block_length)):
        if k == 0:
            continue
        states = [(p, r) for p in groups for r in range(len(beams[p]))]
        logps: dict[tuple[int, int], torch.Tensor] = {}
        for start in range(0, len(states), search.batch_size):
            chunk = states[start : start + search.batch_size]
            began = time.perf_counter()
            out = model.predict([prompts[p] for p, _ in chunk], [beams[p][r][0] for p, r in chunk])
            elapsed = time.perf_counter() - began
            for row, key in enumerate(chunk):
                logps[key] = out[row]
            for p, rows_of_p in Counter(p for p, _ in chunk).items():  # the call's cost shared out by rows
                spent[p][0] += rows_of_p / len(chunk)
                spent[p][1] += elapsed * rows_of_p / len(chunk)
                spent[p][2] += gen_length * rows_of_p
        for p, indices in groups.items():
            children = []
            for r, (tokens, lps, score) in enumerate(beams[p]):
                for c in range(branch):
                    seed = expansion_seed(search.seed, problems[p].id, indices[0], step, r, c)
                    new, gain = expand(logps[(p, r)], tokens, lo, hi, k, c, sampler.temperature, seed)
                    new_lps = [logps[(p, r)][j, t].item() if tokens[j] is None and t is not None else lps[j]
                               for j, t in enumerate(new)]
                    children.append((new, new_lps, score + gain))
            beams[p] = next_beam(task, problems[p], tokenizer, children, len(indices))
    out_rows: dict[tuple[int, int], tuple] = {}
    for p, indices in groups.items():
        beam = beams[p]
        for rank, i in enumerate(indices):
            tokens, lps, _ = beam[rank % len(beam)]
            end = next((j for j, t in enumerate(tokens) if t in stops), len(tokens) - 1)
            share = 1 / len(indices)
            out_rows[(p, i)] = (tokenizer.decode(tokens), lps[: end + 1], spent[p][2] * share, spent[p][0] * share,
                                spent[p][1] * share, tokens, lps, None, None)
    return out_rows


def draw_prefix_beam(search, problems: Sequence, prompts: Sequence[str],
                     rows: list[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
    """Order search for an AR model, whose one order leaves a beam over tokens: each state
    (a prefix) is extended by one token ``branch`` ways (``model.extend``: child 0 greedy,
    the others drawn at the sampler's temperature, seeded as the diffusion children), scored
    by the log-probability of the prefix, pruned by the partial check, the N best kept; a
    state that drew EOS is finished and competes unchanged. The AR counterpart of
    ``draw_order_search`` (the prompt and prefix run through the network again each step)."""
    model, task, tokenizer = search.model, search.task, search.model.tokenizer
    sampler, branch = search.sampler, search.order.branch
    gen_length = sampler.gen_length or model.gen_length
    groups, stops = group_rows(rows), stop_ids(tokenizer)
    beams = {p: [([], [], 0.0, False)] for p in groups}  # (ids, log-probs, score, finished)
    spent = {p: [0.0, 0.0, 0] for p in groups}
    for step in range(gen_length):
        todo = [(p, r, c) for p in groups for r, state in enumerate(beams[p]) if not state[3] for c in range(branch)]
        if not todo:
            break
        drawn: dict[tuple[int, int, int], tuple[list[int], list[float]]] = {}
        for start in range(0, len(todo), search.batch_size):
            chunk = todo[start : start + search.batch_size]
            for greedy in (True, False):  # the greedy children at temperature 0, the others at the sampler's
                part = [key for key in chunk if (key[2] == 0) == greedy]
                if not part:
                    continue
                began = time.perf_counter()
                out = model.extend([prompts[p] for p, _, _ in part], [beams[p][r][0] for p, r, _ in part],
                                   sampler.replace(temperature=0.0) if greedy else sampler,
                                   seeds=[expansion_seed(search.seed, problems[p].id, groups[p][0], step, r, c)
                                          for p, r, c in part], max_tokens=1)
                elapsed = time.perf_counter() - began
                for row, (p, r, c) in enumerate(part):  # the call's cost shared out by rows
                    drawn[(p, r, c)] = (out.tokens[row], out.token_logprobs[row])
                    spent[p][0] += out.nfe / len(part)
                    spent[p][1] += elapsed / len(part)
                    spent[p][2] += len(beams[p][r][0]) + 1  # the prefix runs through the network again
        for p, indices in groups.items():
            children = [state for state in beams[p] if state[3]]
            for r, (ids, lps, score, _) in enumerate(beams[p]):
                if beams[p][r][3]:
                    continue
                for c in range(branch):
                    new, new_lps = drawn[(p, r, c)]
                    ended = any(t in stops for t in new) or len(ids) + len(new) >= gen_length
                    children.append((ids + new, lps + new_lps, score + sum(new_lps), ended))
            beams[p] = next_beam(task, problems[p], tokenizer, children, len(indices))
    out_rows: dict[tuple[int, int], tuple] = {}
    for p, indices in groups.items():
        beam = beams[p]
        for rank, i in enumerate(indices):
            ids, lps, _, _ = beam[rank % len(beam)]
            end = next((j for j, t in enumerate(ids) if t in stops), len(ids))
            share = 1 / len(indices)
            out_rows[(p, i)] = (tokenizer.decode(ids[:end]), lps[: end + 1], spent[p][2] * share, spent[p][0] * share,
                                spent[p][1] * share, None, None, None, None)
    return out_rows
