"""Named training recipes: the settings a paper's code trains recguard's architectures with, under one name.

A recipe is a plain dictionary of victim settings, so it composes with everything else that takes
them: ``SASRec(**recipe("recsys23", "sasrec"))``, ``recguard train --recipe recsys23`` and
``recguard audit --recipe recsys23`` (where it fills the audit's ``model_config``, and the report
records every setting it expanded to). Settings given beside a recipe win over it.

``"recsys23"``
    The ML-1M command of the SASRec-CE paper's code (Klenitskiy & Vasilev, RecSys'23,
    ``antklen/sasrec-bert4rec-recsys23``): full-softmax cross-entropy, Adam with lr 1e-3 and
    β2 0.999, dropout 0.1, batches of 128 users drawn at random, the latest 200 items, validation
    after every epoch. SASRec also takes that code's block and position numbering
    (``block="published"``, ``positions="first"``) and stops after 10 epochs without a better
    validation NDCG@10, within 100; BERT4Rec keeps recguard's model (which scored higher with this
    recipe than the published one), masks 20% of the items and stops after 20, within 200.
    docs/victims.md gives what each reached on ML-1M.
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["RECIPES", "recipe"]

_RECSYS23_TRAINING = {"loss": "ce", "lr": 1e-3, "adam_beta2": 0.999, "dropout": 0.1, "batch_size": 128, "batching": "random",
                      "max_len": 200, "eval_every": 1}

#: recipe name -> architecture -> the victim settings it stands for
RECIPES: dict[str, dict[str, dict]] = {
    "recsys23": {
        "sasrec": {**_RECSYS23_TRAINING, "block": "published", "positions": "first", "epochs": 100, "patience": 10},
        "bert4rec": {**_RECSYS23_TRAINING, "mask_prob": 0.2, "epochs": 200, "patience": 20},
    },
}


def recipe(name: str, model: str, *, param: str = "recipe") -> dict:
    """The settings recipe ``name`` gives architecture ``model`` (a new dictionary, safe to change).

    Raises :class:`~recguard.errors.ConfigError` naming ``param`` for an unknown recipe, and for an
    architecture the recipe does not cover, such as a user's own ``MODULE:FACTORY`` model, whose
    settings are its own.
    """
    if name not in RECIPES:
        raise ConfigError(f"{name!r} is not a recipe; choose one of {', '.join(sorted(RECIPES))}", param=param)
    models = RECIPES[name]
    if model not in models:
        raise ConfigError(f"{name!r} has settings for {', '.join(sorted(models))}, not {model!r}; give that model's settings "
                          "with --set (or as keyword arguments) instead", param=param)
    return dict(models[model])
