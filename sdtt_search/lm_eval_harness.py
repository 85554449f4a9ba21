"""The library inside lm-evaluation-harness: a model type ``sdtt-search``.

    python -m sdtt_search.lm_eval_harness --model sdtt-search \\
        --model_args pretrained=sudoku4-sdtt-4,steps=4,temperature=0 --tasks gsm8k

runs lm-eval's command line with this model type registered (lm-eval finds model types
by import, so ``lm_eval`` itself cannot see it; in Python, ``import
sdtt_search.lm_eval_harness`` registers it for ``lm_eval.simple_evaluate``).

* ``generate_until``: the library's samplers (diffusion and AR models alike) with the
  model's default decoding, overridden by any ``SamplerConfig`` field passed in
  ``model_args`` (``steps=8,threshold=0.9,remasking=margin``...); each request is seeded
  by ``seed`` and its position, so a rerun gives the same text; the text is cut at the
  request's ``until`` strings as lm-eval does.
* ``loglikelihood`` (diffusion models): the masked-diffusion ELBO of the continuation
  given the context, estimated by Monte Carlo as LLaDA's evaluation does (Nie et al.,
  2025): ``mc_samples`` masking times t_k stratified over (0, 1), each continuation
  token masked with probability t_k, and log p >= -E_t[(1/t) sum over masked tokens of
  -log p(token | masked sequence)] (the MDLM NELBO, Sahoo et al. 2024, eq. 10). Default
  64 samples; ``is_greedy`` is reported as False. AR models have no ``loglikelihood``
  here (a one-line error).

Needs ``pip install -e ".[lm-eval]"``.
"""
from __future__ import annotations

import hashlib
import sys
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from .sampling_config import SamplerConfig, with_overrides
from .diffusion.loss import mdlm_loss
from .loading import load_model

#: SamplerConfig fields a --model_args string may set
SAMPLER_FIELDS = tuple(SamplerConfig.__dataclass_fields__)


def request_seed(seed: int, kind: str, index: int) -> int:
    """63-bit seed of request ``index`` (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{seed}|lm-eval|{kind}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@register_model("sdtt-search")
class SDTTSearchLM(LM):
    """lm-eval's view of a zoo model, checkpoint directory or ``hf:`` model.

    Args:
        pretrained: zoo name, checkpoint directory or ``hf:<id or dir>``.
        device: where the model runs (default cpu).
        seed: base seed of the per-request seeds.
        batch_size: requests per ``generate`` call.
        mc_samples: Monte Carlo samples of the ELBO per ``loglikelihood`` request.
        **sampler: any ``SamplerConfig`` field (``steps``, ``temperature``, ``threshold``...).
    """

    def __init__(self, pretrained: str, device: str = "cpu", seed: int = 0, batch_size: int | str = 16,
                 mc_samples: int = 64, **sampler: Any) -> None:
        super().__init__()
        unknown = sorted(set(sampler) - set(SAMPLER_FIELDS))
        if unknown:
            raise ValueError(f"sdtt-search model_args: unknown option(s) {', '.join(unknown)}; use pretrained, device, "
                             f"seed, batch_size, mc_samples or a sampler field ({', '.join(SAMPLER_FIELDS)})")
        self.model = load_model(str(pretrained), device=device)
        self.sampler = with_overrides(self.model.default_sampler(), sampler,
                                      gen_length=getattr(self.model, "gen_length", 0))
        self.seed = int(seed)
        self.batch_size_per_call = 16 if str(batch_size) == "auto" else int(batch_size)
        self.mc_samples = int(mc_samples)
        if self.mc_samples < 1:
            raise ValueError(f"sdtt-search model_args: mc_samples={mc_samples!r} must be a positive integer")

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = []
        for lo in range(0, len(requests), self.batch_size_per_call):
            chunk = requests[lo : lo + self.batch_size_per_call]
            contexts = [req.args[0] for req in chunk]
            seeds = [request_seed(self.seed, "generate", lo + i) for i in range(len(chunk))]
            texts = self.model.generate(contexts, self.sampler, seeds=seeds).texts
            for req, text in zip(chunk, texts):
                until = (req.args[1] or {}).get("until") or []
                for stop in [until] if isinstance(until, str) else until:
                    if stop:
                        text = text.split(stop)[0]
                out.append(text)
        return out

    # ------------------------------------------------------------------ likelihood
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        if getattr(self.model, "kind", "") != "diffusion" or not hasattr(self.model, "model"):
            raise ValueError(f"sdtt-search: loglikelihood needs a masked diffusion model; {self.model.name} is "
                             f"{getattr(self.model, 'kind', 'another kind')}: use generate_until tasks")
        return [(self.elbo(req.args[0], req.args[1], request_seed(self.seed, "loglikelihood", i)), False)
                for i, req in enumerate(requests)]

    @torch.no_grad()
    def elbo(self, context: str, continuation: str, seed: int) -> float:
        """Monte Carlo ELBO of log p(continuation | context), in nats (module docstring)."""
        tokenizer, network = self.model.tokenizer, self.model.model
        prompt, target = tokenizer.encode(context), tokenizer.encode(continuation)
        if not target:
            return 0.0
        device = next(network.parameters()).device
        row = torch.tensor(prompt + target, device=device)
        x = row.repeat(self.mc_samples, 1)
        maskable = torch.zeros_like(x, dtype=torch.bool)
        maskable[:, len(prompt):] = True
        generator = torch.Generator(device="cpu").manual_seed(seed)
        # stratified times: one uniform draw in each of mc_samples equal slices of (eps, 1)
        eps = 1e-3
        u = (torch.arange(self.mc_samples, dtype=torch.float64) + torch.rand(self.mc_samples, generator=generator,
                                                                              dtype=torch.float64)) / self.mc_samples
        t = (eps + (1 - eps) * u).to(device=device, dtype=torch.float32)
        out = mdlm_loss(network, x, maskable, mask_id=tokenizer.mask_id, t=t, generator=generator)
        return -float(out.loss) * len(target)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise ValueError("sdtt-search: loglikelihood_rolling (perplexity tasks) is not supported; use generate_until "
                         "or loglikelihood tasks")


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line with the ``sdtt-search`` model type registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
