"""Metrics: full-ranking HR/NDCG/MRR (and, later, target exposure, detection, agreement)."""

from .ranking import evaluate, hit_rate, mrr, ndcg, ranks_from_scores, summarize_ranks

__all__ = ["evaluate", "hit_rate", "mrr", "ndcg", "ranks_from_scores", "summarize_ranks"]
