"""Which adapter a Hugging Face config needs: llada, dream, mdlm or sdtt.

Detection reads config.json only (``model_type``, ``architectures``, ``auto_map``
class names, and the shape of an SDTT run config); ``family=`` forces a choice.
"""
from __future__ import annotations

from collections.abc import Iterable

FAMILIES = ("llada", "dream", "mdlm", "sdtt")
#: families whose network is the repository's own modelling code (not our Denoiser)
REMOTE_FAMILIES = ("llada", "dream")
#: the MASK id each family's authors use (a config's ``mask_token_id`` wins)
MASK_IDS = {"llada": 126336, "dream": 151666}


def _names(config: dict) -> list[str]:
    """Lower-cased identifying strings of a config: model_type, architectures, auto_map classes."""
    names = [str(config.get("model_type") or "")]
    names += [str(a) for a in (config.get("architectures") or []) if a]
    auto_map = config.get("auto_map") or {}
    if isinstance(auto_map, dict):
        for value in auto_map.values():
            names += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value]) if v]
    return [n.lower() for n in names if n]


def _looks_like_sdtt_run_config(config: dict) -> bool:
    """SDTT hub revisions store the whole OmegaConf run config: a "model" section with the DiT shape."""
    model = config.get("model")
    return isinstance(model, dict) and "hidden_size" in model and ("n_blocks" in model or "n_layers" in model)


def _contains(names: Iterable[str], word: str) -> bool:
    return any(word in n for n in names)


def detect_family(config: dict, *, hint: str = "", family: str | None = None) -> str:
    """The family of a model from its config.json.

    Args:
        config: the parsed config.json.
        hint: the hub id or path (``jdeschena/sdtt`` identifies SDTT revisions).
        family: a forced choice (checked against ``FAMILIES``).
    Returns:
        one of ``FAMILIES``; an unknown model is a one-line ``ValueError``.
    """
    if family is not None:
        family = str(family).lower()
        if family not in FAMILIES:
            raise ValueError(f"family={family!r} is unknown; use one of {', '.join(FAMILIES)}")
        return family
    names = _names(config)
    for name in ("llada", "dream", "mdlm"):
        if _contains(names, name):
            return name
    if _looks_like_sdtt_run_config(config) or "jdeschena/sdtt" in hint.lower():
        return "sdtt"
    described = ", ".join(f"{k}={config.get(k)!r}" for k in ("model_type", "architectures") if config.get(k)) or "no model_type"
    raise ValueError(f"cannot tell the diffusion family of {hint or 'this model'} ({described}); "
                     f"pass family={'|'.join(FAMILIES)}")


def needs_remote_code(config: dict) -> bool:
    """Whether loading the network means running the repository's own Python files.

    True when ``model_type`` is not one ``transformers`` implements itself (then the
    classes come from ``auto_map``).
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    return not (model_type and model_type in CONFIG_MAPPING)
