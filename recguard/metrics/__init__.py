"""Metrics: full-ranking HR/NDCG/MRR, target exposure, fake-user detection (later: agreement)."""

from .detection import detection_metrics
from .ranking import evaluate, hit_rate, mrr, ndcg, ranks_from_scores, summarize_ranks
from .target import attack_lift, clean_cost, defense_removal, target_exposure

__all__ = [
    "evaluate", "hit_rate", "mrr", "ndcg", "ranks_from_scores", "summarize_ranks",
    "target_exposure", "attack_lift", "clean_cost", "defense_removal", "detection_metrics",
]
