"""Detect model-extraction query streams at the API: accounts whose queries do not look like users.

An extraction attacker grows synthetic sequences one item at a time and queries every prefix:
its j-th query is its first j items. So every query carries the account's stream so far, and
the API owner, who holds the model, can ask how a genuine user would have produced it. Two
things give a synthetic stream away:

- **where its next items rank under the model**: the data-free attacker picks the next item
  uniformly from the top-k list it was just served (ranks 1–100, evenly) and now and then a
  uniformly random item (rank in the thousands); genuine users' next items rank anywhere, but
  mostly near the top (the model was trained to put them there);
- **what it starts from**: a uniformly random first item is usually unpopular.

Each prefix becomes a small feature vector: the shares of its transitions whose next item
ranked in 1, 2–3, 4–10, 11–30, 31–100, 101–300, 301–1000 or beyond, their mean log-rank, the mean
and first log-popularity of its items, and its length. A logistic regression learns genuine
prefixes (label 0: the training users' own histories, every prefix) against the prefixes of the
defender's **own simulated extraction** (label 1: a data-free attack the defender runs against its
own model, never the real attacker's queries). An account is flagged from the first query whose
score reaches the threshold, and stays flagged (the running maximum). The threshold is the false-
positive budget: on genuine users held out from the fit, at most ``max_flag_share`` of them are
ever flagged.

A genuine user's history longer than ``max_queries`` items gives two streams: its first
``max_queries`` items (how its account began) and its last ``max_queries`` (the window a model
with that input length trains on, and what an established user's query shows the API). Both
are genuine prefixes in the fit, and a held-out user counts as flagged when either stream is.
``windows="first"`` keeps the first window only (revision 1); on ML-1M, where most users are
longer than 50 items, that flagged about 3% of users on their last window against a 1% budget
(``benchmarks/query_detector.py``).
"""

from __future__ import annotations

import time

import numpy as np

from .._rng import RNGLike, as_generator
from ..data import SequenceData, Split
from ..errors import ConfigError, NotFittedError

__all__ = ["QueryStreamDetector", "stream_ranks", "next_item_ranks", "DETECTOR_REVISION"]

#: Bumped whenever fitting changes what a detector decides (2: genuine users' last windows too).
DETECTOR_REVISION = 2
#: The genuine streams a history gives (see the module).
WINDOWS = ("first+last", "first")

#: upper edges of the rank bins of a stream's transitions (the last bin: beyond 1,000)
RANK_EDGES = np.array([1, 3, 10, 30, 100, 300, 1000])


def stream_ranks(victim, streams: list[np.ndarray], *, batch_size: int = 1024) -> list[np.ndarray]:
    """For each stream (an account's items, in order), the rank of its item ``j + 1`` among the items
    the victim scores for the prefix of its first ``j`` items (seen items excluded, the next item
    kept), for ``j = 1 .. len - 1``."""
    prefixes, targets, owner = [], [], []
    for index, stream in enumerate(streams):
        stream = np.asarray(stream, dtype=np.int64)
        for j in range(1, len(stream)):
            prefixes.append(stream[:j])
            targets.append(stream[j])
            owner.append(index)
    ranks = next_item_ranks(victim, prefixes, targets, batch_size=batch_size)
    owner = np.asarray(owner, dtype=np.int64)
    return [ranks[owner == index] for index in range(len(streams))]


def next_item_ranks(victim, prefixes: list[np.ndarray], targets, *, batch_size: int = 1024) -> np.ndarray:
    """The rank of each ``targets[i]`` among the items the victim scores for ``prefixes[i]`` (seen
    items excluded, the target kept), ``[n]``."""
    import torch

    from ..data import pad_sequences
    from ..metrics.ranking import ranks_from_scores

    ranks = np.zeros(len(prefixes), dtype=np.int64)
    for start in range(0, len(prefixes), batch_size):
        x = torch.from_numpy(pad_sequences(prefixes[start:start + batch_size], victim.max_len))
        with torch.no_grad():
            scores = victim.score(x).detach().float().cpu()
        y = torch.as_tensor(np.asarray(targets[start:start + batch_size], dtype=np.int64))
        ranks[start:start + len(x)] = ranks_from_scores(scores, y, x).numpy()
    return ranks


def _accumulated(stream: np.ndarray, ranks: np.ndarray, log_pop: np.ndarray) -> np.ndarray:
    """One row per query of ``stream`` (its first 1, 2, ... items) of running totals: counts of the
    transitions so far in each rank bin, their summed log-rank, the summed and the first item
    log-popularity, and the number of items, ``[n, bins + 4]``."""
    n = len(stream)
    acc = np.zeros((n, len(RANK_EDGES) + 5))
    if len(ranks):
        step = np.zeros((len(ranks), len(RANK_EDGES) + 1))
        step[np.arange(len(ranks)), np.searchsorted(RANK_EDGES, ranks, side="left")] = 1
        acc[1:, : len(RANK_EDGES) + 1] = np.cumsum(step, axis=0)
        acc[1:, len(RANK_EDGES) + 1] = np.cumsum(np.log(np.maximum(ranks, 1)))
    pops = log_pop[np.asarray(stream, dtype=np.int64)]
    acc[:, -3] = np.cumsum(pops)
    acc[:, -2] = pops[0]
    acc[:, -1] = np.arange(1, n + 1)
    return acc


def _step(acc: np.ndarray, rank: int, item_pop: float) -> np.ndarray:
    """The running totals of a stream after one more query whose new item ranked ``rank`` before it."""
    out = acc.copy()
    out[int(np.searchsorted(RANK_EDGES, rank, side="left"))] += 1
    out[len(RANK_EDGES) + 1] += np.log(max(rank, 1))
    out[-3] += item_pop
    out[-1] += 1
    return out


def _features(acc: np.ndarray, num_items: int) -> np.ndarray:
    """Feature rows from running totals: rank-bin counts and shares, mean log-rank (over log N), mean
    and first log-popularity, log length."""
    bins = acc[:, : len(RANK_EDGES) + 1]
    transitions = np.maximum(acc[:, -1] - 1, 1)[:, None]
    mean_log_rank = acc[:, len(RANK_EDGES) + 1] / transitions[:, 0] / np.log(max(num_items, 2))
    return np.column_stack([bins, bins / transitions, mean_log_rank, acc[:, -3] / acc[:, -1], acc[:, -2], np.log(acc[:, -1])])


def _item_hashes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per left-padded row of ``x``: a hash of its items without the last one, and with it (padding ignored)."""
    from .._rng import mix64

    h = np.zeros(len(x), dtype=np.uint64)
    before = h
    for column in np.asarray(x, dtype=np.int64).T:
        before = h
        h = np.where(column > 0, mix64(h ^ column.astype(np.uint64)), h)
    return before, h


class QueryStreamDetector:
    """Flag API accounts whose query streams look like model extraction (see the module).

    Args:
        max_flag_share: the false-positive budget: at most this share of held-out genuine users
            is ever flagged over their first ``max_queries`` queries (default 0.01).
        max_queries: queries per account the detector reads (longer streams are cut; default 50).
        simulated_accounts: accounts of the defender's own simulated data-free extraction.
        simulated_k, random_share: that simulation's list length and random-item share (the
            attack's defaults: 100 and 0.1).
        holdout: share of the genuine users kept out of the fit to set the threshold.
        windows: ``"first+last"`` (a long history gives its first and its last ``max_queries``
            items) or ``"first"`` (its first only, as revision 1 did).
        seed: every random choice (user split, simulation).
    """

    def __init__(self, *, max_flag_share: float = 0.01, max_queries: int = 50, simulated_accounts: int = 1000,
                 simulated_k: int = 100, random_share: float = 0.1, holdout: float = 0.3, windows: str = "first+last",
                 seed: RNGLike = 0):
        if not 0 < float(max_flag_share) < 0.5:
            raise ConfigError(f"must be a share of users in (0, 0.5), e.g. 0.01; got {max_flag_share!r}", param="max_flag_share")
        if windows not in WINDOWS:
            raise ConfigError(f"must be one of {', '.join(WINDOWS)}, got {windows!r}", param="windows")
        if not 0 < float(holdout) < 1:
            raise ConfigError(f"must be in (0, 1), got {holdout!r}", param="holdout")
        for name, value in (("max_queries", max_queries), ("simulated_accounts", simulated_accounts), ("simulated_k", simulated_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"must be an integer >= 2, got {value!r}", param=name)
        self.max_flag_share, self.max_queries, self.holdout = float(max_flag_share), max_queries, float(holdout)
        self.simulated_accounts, self.simulated_k, self.random_share = simulated_accounts, simulated_k, float(random_share)
        self.seed, self.windows = seed, windows

    def _totals(self, streams: list[np.ndarray]) -> list[np.ndarray]:
        streams = [np.asarray(s, dtype=np.int64)[: self.max_queries] for s in streams]
        ranks = stream_ranks(self.victim_, streams)
        return [_accumulated(s, r, self.log_pop_) for s, r in zip(streams, ranks)]

    def _rows(self, streams: list[np.ndarray]) -> list[np.ndarray]:
        return [_features(acc, self.victim_.num_items) for acc in self._totals(streams)]

    def genuine_streams(self, history: np.ndarray) -> list[np.ndarray]:
        """A genuine history's streams: its first ``max_queries`` items, and its last ones when longer."""
        history = np.asarray(history, dtype=np.int64)
        if len(history) <= self.max_queries or self.windows == "first":
            return [history]
        return [history[: self.max_queries], history[-self.max_queries:]]

    def fit(self, victim, data: SequenceData | Split) -> QueryStreamDetector:
        """Learn genuine streams against a simulated data-free extraction of ``victim``. ``data``: the
        genuine users' histories (a :class:`SequenceData`, read as is) or a split (its training part)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from ..attacks.extraction import generate
        from ..victims import BlackBoxVictim

        t0 = time.perf_counter()
        gen = as_generator(self.seed)
        train = data.train if isinstance(data, Split) else data
        counts = np.bincount(train.items, minlength=victim.num_items + 1).astype(np.float64)
        self.victim_ = victim
        self.log_pop_ = np.log1p(counts) / np.log1p(max(counts.max(), 1.0))
        users = gen.permutation(np.flatnonzero(train.lengths >= 2))
        held = int(round(self.holdout * len(users)))
        if held < 10 or len(users) - held < 10:
            raise ConfigError(f"need at least 10 genuine users on each side of the holdout, got {len(users)} users with 2+ items",
                              param="data")
        fit_users, held_users = users[held:], users[:held]
        k = min(self.simulated_k, victim.num_items)
        simulated = generate(BlackBoxVictim(victim, k=k), num_sequences=self.simulated_accounts, length=min(self.max_queries, 50),
                             random_share=self.random_share, rng=gen, progress=False)
        sim_streams = [simulated.seqs[i, : simulated.lengths[i]] for i in range(len(simulated.seqs))]
        genuine_rows = np.vstack(self._rows([w for u in fit_users for w in self.genuine_streams(train[u])]))
        simulated_rows = np.vstack(self._rows(sim_streams))
        x = np.vstack([genuine_rows, simulated_rows])
        y = np.r_[np.zeros(len(genuine_rows)), np.ones(len(simulated_rows))]
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")).fit(x, y)
        held_windows = [self.genuine_streams(train[u]) for u in held_users]
        peaks = iter([s.max() for s in self.scores([w for ws in held_windows for w in ws])])
        held_max = np.array([max(next(peaks) for _ in ws) for ws in held_windows])
        self.threshold_ = float(np.quantile(held_max, 1.0 - self.max_flag_share, method="higher"))
        self.info_ = {"genuine_users_fit": int(len(fit_users)), "genuine_users_held": int(len(held_users)),
                      "simulated_accounts": int(len(sim_streams)), "genuine_prefixes": int(len(genuine_rows)),
                      "simulated_prefixes": int(len(simulated_rows)), "threshold": self.threshold_,
                      "held_flagged_share": float(np.mean(held_max >= self.threshold_)),
                      "revision": DETECTOR_REVISION if self.windows == "first+last" else 1, "windows": self.windows,
                      "fit_s": time.perf_counter() - t0}
        return self

    def _require_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("call QueryStreamDetector.fit(victim, data) first")

    def scores(self, streams: list[np.ndarray]) -> list[np.ndarray]:
        """Per stream, its running suspicion at each of its first ``max_queries`` queries (non-decreasing)."""
        self._require_fitted()
        return [np.maximum.accumulate(self.model_.decision_function(rows)) for rows in self._rows(streams)]

    def flag_queries(self, x) -> np.ndarray:
        """Whether each query of the batch ``x`` (left-padded sequences: each an account's stream so
        far) comes from a flagged account, as an API would decide it while serving. A query that
        extends one seen before by one item is scored from that query's running totals (one
        victim pass for the new item's rank); any other query is scored from scratch. The running
        totals and maxima of every query served are kept (``reset_queries`` forgets them)."""
        self._require_fitted()
        x = np.asarray(x, dtype=np.int64)
        cache = self.__dict__.setdefault("_served", {})
        before, full = _item_hashes(x)
        lengths = (x > 0).sum(1)
        flags = np.zeros(len(x), dtype=bool)
        extends = [lengths[i] >= 2 and int(before[i]) in cache for i in range(len(x))]
        known = [i for i in range(len(x)) if extends[i]]
        fresh = [i for i in range(len(x)) if not extends[i] and lengths[i] >= 1]
        if known:
            prefixes = [x[i][x[i] > 0][:-1] for i in known]
            last = [int(x[i][x[i] > 0][-1]) for i in known]
            ranks = next_item_ranks(self.victim_, prefixes, last)
            for i, item, rank in zip(known, last, ranks):
                acc, peak = cache[int(before[i])]
                if acc[-1] < self.max_queries:
                    acc = _step(acc, int(rank), float(self.log_pop_[item]))
                    peak = max(peak, float(self.model_.decision_function(_features(acc[None], self.victim_.num_items))[0]))
                cache[int(full[i])] = (acc, peak)
                flags[i] = peak >= self.threshold_
        if fresh:
            totals = self._totals([x[i][x[i] > 0] for i in fresh])
            for i, acc in zip(fresh, totals):
                peak = float(self.model_.decision_function(_features(acc, self.victim_.num_items)).max())
                cache[int(full[i])] = (acc[-1], peak)
                flags[i] = peak >= self.threshold_
        return flags

    def reset_queries(self) -> None:
        """Forget the queries served so far (their running totals)."""
        self.__dict__.pop("_served", None)

    def flagged_at(self, streams: list[np.ndarray]) -> np.ndarray:
        """Per stream, the 1-based query at which it is first flagged, 0 when never (within ``max_queries``)."""
        out = np.zeros(len(streams), dtype=np.int64)
        for i, running in enumerate(self.scores(streams)):
            hit = np.flatnonzero(running >= self.threshold_)
            out[i] = hit[0] + 1 if len(hit) else 0
        return out
