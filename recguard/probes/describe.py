"""Optional one-line latent descriptions written by a local Hugging Face causal LM."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

__all__ = ["describe_latents", "latent_prompt"]


def latent_prompt(entry: dict) -> str:
    """The evidence of one latent as a prompt (items its top sequences share, their
    recommendations, and the metadata concept)."""
    def names(rows):
        return ", ".join(r.get("title") or f"item {r['item']}" for r in rows) or "none"

    return (
        "Sequences of a recommender's users that strongly activate one feature share these recent items: "
        f"{names(entry.get('top_items', []))}. The model then recommends: {names(entry.get('top_recommended', []))}. "
        f"Most common property: {entry.get('concept') or 'none'}.\nIn one short line, the feature represents:"
    )


def describe_latents(entries: list[dict], lm: str | Path, *, max_new_tokens: int = 24, batch_size: int = 16) -> list[dict]:
    """Add ``lm_description`` to every entry that has a concept, written greedily (deterministic)
    by the causal LM in the local Hugging Face directory ``lm``. ``description`` becomes that
    line when it is non-empty, else stays the metadata concept."""
    lm = Path(lm)
    if not (lm / "config.json").exists():
        raise ConfigError(f"{lm}: not a Hugging Face model directory (no config.json); pass a local causal-LM folder",
                          param="lm")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(lm), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(lm), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{lm}: cannot load a causal LM from this directory: {exc}", param="lm") from None
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "left"
    todo = [e for e in entries if e.get("concept") is not None]
    for s in range(0, len(todo), batch_size):
        chunk = todo[s : s + batch_size]
        enc = tok([latent_prompt(e) for e in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        for e, row in zip(chunk, gen[:, enc["input_ids"].shape[1]:]):
            text = tok.decode(row, skip_special_tokens=True).strip().splitlines()
            line = text[0].strip() if text else ""
            e["lm_description"] = line
            if line:
                e["description"] = line
    return entries
