"""Run RecBole 1.2.1's SASRec (full-softmax CE) on an atomic dataset; print one JSON line per epoch.

argv: EPOCHS THREADS [DATASET DATA_PATH MAX_SECONDS]; without the last three, RecBole's
bundled ML-100k. Training stops after the epoch that passes MAX_SECONDS of training.
Runs inside a separate virtual environment with RecBole (numpy<2, setuptools<81);
called by recbole_speed.py and sampled_losses.py, never imported by recguard.
"""

import json
import os
import sys
import tempfile
import time

import torch

epochs = int(sys.argv[1])
threads = int(sys.argv[2])
torch.set_num_threads(threads)

import recbole  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.model.sequential_recommender import SASRec  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

dataset_name = sys.argv[3] if len(sys.argv) > 3 else "ml-100k"
data_path = sys.argv[4] if len(sys.argv) > 4 else os.path.join(os.path.dirname(recbole.__file__), "dataset_example")
max_seconds = float(sys.argv[5]) if len(sys.argv) > 5 else float("inf")
cfg = {
    "data_path": data_path,
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "loss_type": "CE",
    "train_neg_sample_args": None,
    "MAX_ITEM_LIST_LENGTH": 50,
    "hidden_size": 64,
    "inner_size": 256,
    "n_layers": 2,
    "n_heads": 2,
    "epochs": epochs,
    "train_batch_size": 256,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
    "metrics": ["Hit", "NDCG"],
    "topk": [10],
    "valid_metric": "NDCG@10",
    "device": "cpu",
    "use_gpu": False,
    "seed": 0,
    "show_progress": False,
    "checkpoint_dir": tempfile.mkdtemp(),
    "log_wandb": False,
}
config = Config(model="SASRec", dataset=dataset_name, config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = SASRec(config, train_data.dataset).to(config["device"])
trainer = Trainer(config, model)
train_s = 0.0
for epoch in range(epochs):
    t = time.perf_counter()
    loss = trainer._train_epoch(train_data, epoch, show_progress=False)
    train_s += time.perf_counter() - t
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    valid = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
    print(json.dumps({"epoch": epoch + 1, "train_s": train_s, "loss": float(loss if not isinstance(loss, tuple) else sum(loss)),
                      "test_ndcg@10": float(test["ndcg@10"]), "valid_ndcg@10": float(valid["ndcg@10"]),
                      "test_hit@10": float(test["hit@10"]), "train_samples": len(train_data.dataset)}), flush=True)
    if train_s > max_seconds:
        break
