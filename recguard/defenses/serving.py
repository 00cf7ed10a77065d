"""Defenses of the top-k API against model extraction: what a served list lets through.

A :class:`ServedVictim` wraps any victim as its API serves it: ``recommend`` returns the list a
:class:`ServingPolicy` lets through, and nothing else of the model is exposed (no scores, no
gradients). Wrap it in a :class:`~recguard.victims.BlackBoxVictim` and an extraction attack
reaches it exactly as it would reach a real API; genuine users see the same lists, so
:func:`served_quality` measures what the defense costs them (NDCG@10 of what they are shown).

Policies (``ServingPolicy.parse``):

- ``none``: the model's own top-k.
- ``truncate:M``: at most the top ``M`` items per query (an API that answers with 100 items
  answers with ``M``); genuine users who see ``M`` ≥ 10 items lose nothing.
- ``shuffle:W``: the top-k in random order within consecutive windows of ``W`` ranks (the set of
  the top ``W``, ``2W``, ... is kept; the order inside each window is not).
- ``sample:T``: a Plackett–Luce draw from the model's scores at temperature ``T`` (scores
  standardised per query over the unseen items, then Gumbel-perturbed: a draw without
  replacement), so low-ranked items sometimes enter the list and top items sometimes leave it.
- ``unordered:W``: the top-k with each window of ``W`` ranks sorted by item id (``unordered:100``
  answers a 100-item query with a set).

Any policy but ``truncate`` takes ``,head=H``: the first ``H`` ranks are served exactly and only
the rest is perturbed (``shuffle:10,head=10`` keeps the top 10 a genuine user is shown and
reorders ranks 11–20, 21–30, ...), so a user who sees ``H`` items loses nothing.

The randomness is **keyed by the query**: the same sequence always gets the same answer (from
``seed`` and the sequence's items, through a counter-based hash), so an attacker cannot average
the noise away by asking again, and a run is reproducible whatever the batching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._finite import check_scores
from .._rng import keyed_uniform, query_keys
from ..errors import CapabilityError, ConfigError
from ..victims import ListsOnly

__all__ = ["ServingPolicy", "ServedVictim", "served_quality", "serve", "SERVING_KINDS"]

SERVING_KINDS = ("none", "truncate", "shuffle", "sample", "unordered")


@dataclass(frozen=True)
class ServingPolicy:
    """How the API turns the model's ranking into the list it returns (see the module).

    Args:
        kind: ``none``, ``truncate``, ``shuffle``, ``sample`` or ``unordered``.
        size: items kept (``truncate``) or the window of ranks (``shuffle``, ``unordered``).
        temperature: ``sample``'s temperature on standardised scores (> 0; higher = noisier).
        head: ranks served exactly before the perturbation starts (not with ``truncate``).
        seed: keys the per-query randomness.
    """

    kind: str = "none"
    size: int | None = None
    temperature: float | None = None
    head: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.kind not in SERVING_KINDS:
            raise ConfigError(f"must be one of {', '.join(SERVING_KINDS)}, got {self.kind!r}", param="defense")
        if self.kind in ("truncate", "shuffle", "unordered"):
            if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
                raise ConfigError(f"{self.kind} needs a positive number of items, e.g. {self.kind}:10; got {self.size!r}",
                                  param="defense")
        if self.kind == "sample" and not (isinstance(self.temperature, (int, float)) and float(self.temperature) > 0):
            raise ConfigError(f"sample needs a temperature > 0, e.g. sample:0.5; got {self.temperature!r}", param="defense")
        if isinstance(self.head, bool) or not isinstance(self.head, int) or self.head < 0:
            raise ConfigError(f"head must be an integer >= 0, got {self.head!r}", param="defense")
        if self.head and self.kind in ("none", "truncate"):
            raise ConfigError(f"{self.kind} perturbs nothing, so head does not apply", param="defense")

    @classmethod
    def parse(cls, text: str, *, seed: int = 0) -> ServingPolicy:
        """``"none"``, ``"truncate:10"``, ``"shuffle:10"``, ``"sample:0.5"`` or ``"unordered:10"``, each
        but ``truncate`` optionally followed by ``,head=H``."""
        main, *options = str(text).strip().split(",")
        head = 0
        for option in options:
            name, _, value = option.strip().partition("=")
            if name != "head" or not value.strip().isdigit():
                raise ConfigError(f"{text!r}: the only option is head=H (an integer), e.g. shuffle:10,head=10", param="defense")
            head = int(value)
        kind, _, arg = main.partition(":")
        kind = kind.strip().lower()
        if kind not in SERVING_KINDS:
            raise ConfigError(f"unknown API defense {text!r}; choose none, truncate:M, shuffle:W, sample:T or unordered:W",
                              param="defense")
        if kind == "none":
            return cls(head=head, seed=seed)
        try:
            number = float(arg) if kind == "sample" else int(arg)
        except ValueError:
            raise ConfigError(f"{text!r}: {kind} takes a number after the colon, e.g. {kind}:"
                              f"{'0.5' if kind == 'sample' else '10'}", param="defense") from None
        if kind == "sample":
            return cls(kind, temperature=number, head=head, seed=seed)
        return cls(kind, size=number, head=head, seed=seed)

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "none"
        text = f"{self.kind}:{self.temperature:g}" if self.kind == "sample" else f"{self.kind}:{self.size}"
        return text + (f",head={self.head}" if self.head else "")

    @property
    def max_list(self) -> int | None:
        """The most items one answer holds (None: the catalogue)."""
        return self.size if self.kind == "truncate" else None


class ServedVictim(ListsOnly):
    """``victim`` as its API serves it under ``policy``: ``recommend`` only (see the module).

    ``guard``: a fitted :class:`~recguard.defenses.querystream.QueryStreamDetector` of the same
    victim; a query from an account it flags is answered with random unseen items (keyed by the
    query, like every other draw), and :attr:`guard_flags` counts the queries so answered."""

    def __init__(self, victim, policy: ServingPolicy | str = "none", *, guard=None):
        self._victim = victim
        self.policy = ServingPolicy.parse(policy) if isinstance(policy, str) else policy
        if guard is not None and getattr(guard, "victim_", None) is not victim:
            raise ConfigError("the guard must be a QueryStreamDetector fitted on this victim (QueryStreamDetector().fit(victim, data))",
                              param="guard")
        self.guard = guard
        self.guard_flags = 0

    @property
    def label(self) -> str:
        return self.policy.label + ("+guard" if self.guard is not None else "")

    @property
    def max_list(self) -> int:
        return min(self.policy.max_list or self.num_items, self.num_items)

    def recommend(self, seqs, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        """The served lists ``[B, k]`` (``k`` at most :attr:`max_list`)."""
        from ..victims import as_batch

        if k > self.max_list:
            raise CapabilityError(f"this API answers with at most {self.max_list} items ({self.policy.label}), asked for {k}")
        x = as_batch(seqs, self.max_len, self.num_items)
        lists = self._served(x, k, exclude_seen)
        if self.guard is not None:
            xs = x.cpu().numpy()
            flagged = self.guard.flag_queries(xs)
            if flagged.any():
                lists[flagged] = self._random(xs[flagged], k)
                self.guard_flags += int(flagged.sum())
        return lists

    def _random(self, x: np.ndarray, k: int) -> np.ndarray:
        """Random unseen items for each row of ``x``, keyed by the row."""
        noise = keyed_uniform(query_keys(x, self.policy.seed + 1), self.num_items + 1)
        noise[:, 0] = -1.0
        np.put_along_axis(noise, x, -1.0, axis=1)
        return np.argsort(-noise, axis=1, kind="stable")[:, :k]

    def _served(self, x: torch.Tensor, k: int, exclude_seen: bool) -> np.ndarray:
        p = self.policy
        if p.kind == "sample":
            return self._sampled(x, k, exclude_seen)
        lists = np.asarray(self._victim.recommend(x, k=k, exclude_seen=exclude_seen))
        if p.kind in ("shuffle", "unordered"):
            xs = x.cpu().numpy()
            noise = keyed_uniform(query_keys(xs, p.seed), k) if p.kind == "shuffle" else lists.astype(np.float64)
            rank = np.arange(k)
            # windows of ranks after the exact head (each head rank a window of its own); inside each, order by the noise (or id)
            window = np.where(rank < p.head, rank - p.head, (rank - p.head) // p.size)
            order = np.lexsort((noise, np.broadcast_to(window, lists.shape)), axis=1)
            lists = np.take_along_axis(lists, order, axis=1)
        return lists

    def _sampled(self, x: torch.Tensor, k: int, exclude_seen: bool) -> np.ndarray:
        from ..victims import mask_seen_

        scores = check_scores(self._victim.score(x), self._victim).detach().float().cpu()
        scores[:, 0] = float("-inf")
        if exclude_seen:
            mask_seen_(scores, x.cpu())
        finite = torch.isfinite(scores)
        counts = finite.sum(1, keepdim=True).clamp_min(1)
        mean = torch.where(finite, scores, 0).sum(1, keepdim=True) / counts
        spread = (torch.where(finite, scores - mean, 0) ** 2).sum(1, keepdim=True).div(counts).sqrt().clamp_min(1e-12)
        u = torch.from_numpy(keyed_uniform(query_keys(x.cpu().numpy(), self.policy.seed), scores.shape[1])).float()
        gumbel = -torch.log(-torch.log(u))
        perturbed = torch.where(finite, (scores - mean) / spread / float(self.policy.temperature) + gumbel, float("-inf"))
        head = min(self.policy.head, k)
        if not head:
            return torch.topk(perturbed, k, dim=1).indices.numpy()
        exact = torch.topk(scores, head, dim=1).indices  # served as ranked; the draw fills the rest
        perturbed.scatter_(1, exact, float("-inf"))
        return torch.cat([exact, torch.topk(perturbed, k - head, dim=1).indices], dim=1).numpy()

    def __repr__(self) -> str:
        return f"ServedVictim({self.label})"


def serve(victim, defense: str, data=None, *, seed: int = 0) -> ServedVictim:
    """``victim`` behind the API defense named by ``defense``: a policy (``"truncate:10"``, ...),
    ``"guard"`` (the query-stream detector, fitted here on ``data``'s genuine users with a 1%
    budget, answering flagged accounts at random), or ``"POLICY+guard"`` (both)."""
    policy_text, guarded = _split_guard(defense)
    policy = ServingPolicy.parse(policy_text, seed=seed)
    guard = None
    if guarded:
        from .querystream import QueryStreamDetector

        if data is None:
            raise ConfigError("the guard learns from the genuine users' histories; pass the data", param="defense")
        guard = QueryStreamDetector(max_flag_share=0.01, seed=np.random.default_rng([seed, 1])).fit(victim, data)
    return ServedVictim(victim, policy, guard=guard)


def _split_guard(defense: str) -> tuple[str, bool]:
    """``(policy text, guarded)`` of a defense name: ``"guard"`` → ``("none", True)``,
    ``"truncate:10+guard"`` → ``("truncate:10", True)``, anything else → ``(it, False)``."""
    text = str(defense).strip()
    if text == "guard":
        return "none", True
    if text.endswith("+guard"):
        return text.removesuffix("+guard"), True
    return text, False


def check_defense(defense: str) -> str:
    """``defense`` if it names an API defense :func:`serve` knows, else a :class:`ConfigError`."""
    policy_text, _ = _split_guard(defense)
    ServingPolicy.parse(policy_text)
    return str(defense).strip()


def served_quality(api, split, *, which: str = "test", k: int = 10, batch_size: int = 1024) -> dict:
    """HR@k and NDCG@k of the lists ``api.recommend`` serves to ``split``'s users for their
    held-out item (``which``: ``"valid"`` or ``"test"``): what genuine users are shown. An API
    that answers with fewer than ``k`` items is scored on what it shows (``shown``). Lists leave
    out the items a user has seen, so a held-out repeat counts as a miss (the full-ranking
    :func:`~recguard.metrics.evaluate` keeps it): compare served numbers with served numbers.
    Behind a guard, the users' queries are scored on their own: the guard first forgets the
    queries it served before (an attacker's), and its ``guard_flags`` count is left as it was."""
    guard = getattr(api, "guard", None)
    counted = getattr(api, "guard_flags", 0)
    if guard is not None:
        guard.reset_queries()
    x, y = split.inputs(which, api.max_len)
    shown = min(int(k), getattr(api, "max_list", api.num_items))
    hits, gains = 0.0, 0.0
    for start in range(0, len(x), batch_size):
        lists = np.asarray(api.recommend(x[start:start + batch_size], k=shown))
        where = lists == np.asarray(y[start:start + batch_size])[:, None]
        found = where.any(1)
        rank = where.argmax(1)
        hits += float(found.sum())
        gains += float((found / np.log2(rank + 2)).sum())
    if guard is not None:
        api.guard_flags = counted
    n = max(1, len(x))
    return {f"HR@{k}": hits / n, f"NDCG@{k}": gains / n, "users": int(len(x)), "shown": int(shown)}
