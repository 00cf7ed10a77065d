"""Concept dictionary of SAE latents: candidate concepts from item metadata, enrichment,
and RecSAE-style validation on held-out sequences (PROTOCOLS §5).

A *concept* is an item property: a genre/category, a release decade, a title term, or a
popularity band. A sequence *carries* concept ``c`` at threshold ``tau`` when at least a
share ``tau`` of its context items (its last few history items plus its top-10
recommendations) have the property. Each latent gets the (concept, threshold) most
enriched among its top-activating sequences; validation then asks, on sequences the
dictionary never saw, whether "concept present" predicts "latent fires".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .._rng import RNGLike, as_generator
from ..data import SequenceData

__all__ = ["ConceptCatalogue", "build_catalogue", "build_dictionary", "validate_dictionary", "THRESHOLDS"]

THRESHOLDS = (0.1, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class ConceptCatalogue:
    """Item-by-concept membership: ``matrix[i, c]`` is True when item ``i`` has concept ``c``."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    matrix: np.ndarray  # [num_items + 1, n_concepts] bool

    def __len__(self) -> int:
        return len(self.names)

    def strength(self, context: np.ndarray) -> np.ndarray:
        """Share of each row's context items (``[n, m]`` ids, 0 = none) carrying each concept ``[n, C]``."""
        valid = context > 0
        counts = np.zeros((len(context), len(self.names)), dtype=np.float32)
        for j in range(context.shape[1]):  # m is small (~15): loop over columns, vectorised over rows
            counts += self.matrix[context[:, j]] * valid[:, j, None]
        return counts / np.maximum(valid.sum(1, keepdims=True), 1)


_YEAR = re.compile(r"\(\s*\d{4}\s*\)")


def build_catalogue(data: SequenceData, *, max_terms: int = 300, min_items: int = 3, max_item_share: float = 0.2) -> ConceptCatalogue:
    """Candidate concepts of ``data``'s items: genres, release decades, title terms, popularity bands.

    Title terms come from a TF-IDF vectoriser over the titles (English stop words and years
    removed; a term must occur in ``min_items`` titles and at most ``max_item_share`` of
    them); the ``max_terms`` terms with the largest summed TF-IDF weight are kept.
    Popularity bands use training interaction counts: head = top 10 % of items, torso =
    next 40 %, tail = the rest.
    """
    n = data.num_items + 1
    names: list[str] = []
    kinds: list[str] = []
    cols: list[np.ndarray] = []
    meta = data.meta
    if meta is not None and meta.has_genres:
        genres = sorted({g for gs in meta.genres[1:] for g in gs if g})
        for g in genres:
            cols.append(np.fromiter((g in gs for gs in meta.genres), dtype=bool, count=n))
            names.append(f"genre: {g}")
            kinds.append("genre")
    if meta is not None and meta.years is not None and np.any(meta.years[1:] > 0):
        years = np.asarray(meta.years)
        decades = years // 10 * 10
        for d in sorted(set(decades[years > 0].tolist())):
            cols.append((decades == d) & (years > 0))
            names.append(f"decade: {d}s")
            kinds.append("decade")
    if meta is not None and meta.has_titles:
        from sklearn.feature_extraction.text import TfidfVectorizer

        titles = [_YEAR.sub(" ", t or "") for t in meta.titles]
        n_titled = sum(1 for t in meta.titles[1:] if t)
        vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b", min_df=min(min_items, max(1, n_titled)),
                              max_df=max_item_share, lowercase=True)
        try:
            tfidf = vec.fit_transform(titles)
        except ValueError:  # empty vocabulary after pruning
            tfidf = None
        if tfidf is not None:
            terms = np.asarray(vec.get_feature_names_out())
            weight = np.asarray(tfidf.sum(0)).ravel()
            keep = np.argsort(-weight, kind="stable")[:max_terms]
            present = (tfidf[:, keep] > 0).toarray()
            for j, t in enumerate(terms[keep]):
                cols.append(present[:, j])
                names.append(f"title: {t}")
                kinds.append("title")
    counts = data.item_counts().astype(np.float64)
    counts[0] = -1
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-counts[1:], kind="stable") + 1] = np.arange(n - 1)
    rank[0] = n
    head, torso = int(np.ceil(0.1 * (n - 1))), int(np.ceil(0.5 * (n - 1)))
    for label, mask in (("head (top 10%)", rank < head), ("torso (10-50%)", (rank >= head) & (rank < torso)),
                        ("tail (bottom 50%)", (rank >= torso) & (rank < n - 1))):
        mask = mask.copy()
        mask[0] = False
        cols.append(mask)
        names.append(f"popularity: {label}")
        kinds.append("popularity")
    matrix = np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=bool)
    matrix[0] = False
    return ConceptCatalogue(tuple(names), tuple(kinds), matrix)


def _top_rows(acts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent (column) the indices of its ``n`` largest activations, best first, and how many fire."""
    n = min(n, len(acts))
    part = np.argpartition(-acts, n - 1, axis=0)[:n]  # [n, L]
    vals = np.take_along_axis(acts, part, axis=0)
    order = np.argsort(-vals, axis=0, kind="stable")
    return np.take_along_axis(part, order, axis=0).T, (acts > 0).sum(0)  # [L, n], [L]


def build_dictionary(
    acts: np.ndarray,
    strength: np.ndarray,
    catalogue: ConceptCatalogue,
    history: np.ndarray,
    recs: np.ndarray,
    *,
    top_n: int = 20,
    min_firing: int = 5,
    titles: tuple[str, ...] | None = None,
) -> list[dict]:
    """Pick each latent's concept by enrichment among its ``top_n`` top-activating sequences.

    Args:
        acts: latent activations ``[n, L]`` of the dictionary-building sequences.
        strength: concept strengths ``[n, C]`` (:meth:`ConceptCatalogue.strength`).
        history / recs: the sequences' last history items ``[n, m]`` and top-10 recommendations ``[n, 10]``.
    A sequence carries ``(concept, tau)`` when at least a share ``tau`` of its context items
    have the concept. Enrichment = share of the top sequences carrying it minus share of the
    non-firing sequences carrying it (Youden's J, the quantity validation's recall +
    specificity estimates); the lift and a two-proportion z-score against all sequences are
    recorded as evidence.
    """
    n, n_lat = acts.shape
    top, firing = _top_rows(acts, top_n)
    present = np.concatenate([strength >= t for t in THRESHOLDS], axis=1).astype(np.float32)  # [n, C*T]
    p_all = present.mean(0)
    fires = (acts > 0).astype(np.float32)
    n_quiet = n - fires.sum(0)  # [L]
    quiet_sum = present.sum(0)[None] - fires.T @ present  # [L, C*T] concept counts among non-firing rows
    out = []
    n_c = len(catalogue)
    for j in range(n_lat):
        rows = top[j][acts[top[j], j] > 0]
        entry = {"latent": j, "firing": int(firing[j]), "firing_rate": float(firing[j] / max(n, 1)), "concept": None}
        if len(rows) < min_firing or n_c == 0:
            entry["reason"] = "dead" if firing[j] == 0 else f"fires on fewer than {min_firing} sequences"
            out.append(entry)
            continue
        p_top = present[rows].mean(0)
        p_quiet = quiet_sum[j] / n_quiet[j] if n_quiet[j] > 0 else p_all
        # enrichment = Youden's J (share of top sequences carrying the concept minus share of
        # non-firing ones): exactly what validation's recall + specificity rewards
        score = p_top - p_quiet
        best = int(np.argmax(score))
        c, t = best % n_c, THRESHOLDS[best // n_c]
        z = (p_top[best] - p_all[best]) / np.sqrt(p_all[best] * (1 - p_all[best]) / len(rows) + 1e-6)
        entry.update(
            concept=catalogue.names[c], kind=catalogue.kinds[c], concept_index=c, threshold=t,
            top_share=float(p_top[best]), base_share=float(p_all[best]), quiet_share=float(p_quiet[best]),
            enrichment=float(score[best]), enrichment_z=float(z),
            lift=float(p_top[best] / max(p_all[best], 1e-9)),
            top_items=_common(history[rows], titles), top_recommended=_common(recs[rows], titles),
            mean_top_activation=float(acts[rows, j].mean()),
        )
        out.append(entry)
    return out


def _common(items: np.ndarray, titles, n: int = 5) -> list[dict]:
    flat = items[items > 0]
    if flat.size == 0:
        return []
    ids, counts = np.unique(flat, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:n]
    return [{"item": int(ids[o]), "count": int(counts[o]), **({"title": titles[int(ids[o])]} if titles else {})} for o in order]


def validate_dictionary(entries: list[dict], acts: np.ndarray, strength: np.ndarray, *, n_each: int = 5, rng: RNGLike = 0) -> list[dict]:
    """RecSAE validation on held-out sequences: for each latent with a concept, the concept
    predicts "fires" on its ``n_each`` top-activating sequences (recall) and "does not fire"
    on ``n_each`` random non-firing ones (specificity); confidence = hits / (2 n_each).
    Also the ROC-AUC of the latent's activation for "concept present" over all held-out rows.
    Entries are updated in place and returned."""
    from sklearn.metrics import roc_auc_score

    gen = as_generator(rng)
    for e in entries:
        if e.get("concept") is None:
            e.update(confidence=None, auc=None)
            continue
        j, c = e["latent"], e["concept_index"]
        a = acts[:, j]
        present = strength[:, c] >= e["threshold"]
        fire = np.flatnonzero(a > 0)
        quiet = np.flatnonzero(a <= 0)
        top = fire[np.argsort(-a[fire], kind="stable")[:n_each]]
        neg = gen.choice(quiet, size=min(n_each, len(quiet)), replace=False) if len(quiet) else np.zeros(0, dtype=np.int64)
        hits = int(present[top].sum()) + int((~present[neg]).sum())
        total = len(top) + len(neg)
        e["confidence"] = hits / (2 * n_each) if total else 0.0
        e["held_out_firing"] = int(len(fire))
        e["auc"] = float(roc_auc_score(present, a)) if 0 < present.sum() < len(present) else None
    return entries
