"""Fake-user detection metrics on the injected users (PROTOCOLS §3)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["detection_metrics"]


def detection_metrics(is_fake: np.ndarray, scores: np.ndarray | None, flagged: np.ndarray | None) -> dict:
    """ROC-AUC and PR-AUC of ``scores`` (higher = more suspicious) and precision, recall, F1
    and false-positive rate (on genuine users) of the defense's own decisions ``flagged``.

    ``is_fake`` marks the truly injected users. Entries that cannot be computed (no
    scores, or only one class present) are ``None``.
    """
    y = np.asarray(is_fake, dtype=bool).reshape(-1)
    out: dict = {"fake_users": int(y.sum()), "genuine_users": int((~y).sum())}
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.shape != y.shape:
            raise ConfigError(f"{len(s)} scores for {len(y)} users", param="scores")
        if 0 < y.sum() < len(y):
            from sklearn.metrics import average_precision_score, roc_auc_score

            out["ROC-AUC"] = float(roc_auc_score(y, s))
            out["PR-AUC"] = float(average_precision_score(y, s))
        else:
            out["ROC-AUC"] = out["PR-AUC"] = None
    if flagged is not None:
        f = np.asarray(flagged, dtype=bool).reshape(-1)
        if f.shape != y.shape:
            raise ConfigError(f"{len(f)} decisions for {len(y)} users", param="flagged")
        tp, fp = int((f & y).sum()), int((f & ~y).sum())
        fn = int((~f & y).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        out.update(
            flagged=int(f.sum()), precision=precision, recall=recall,
            F1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            FPR=fp / max(1, int((~y).sum())),
        )
    return out
