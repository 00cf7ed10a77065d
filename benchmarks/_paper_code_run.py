"""Run the SASRec-CE paper's own ``run.py`` (antklen/sasrec-bert4rec-recsys23) on a CPU, unchanged.

argv: SRC_DIR SEED THREADS HYDRA_OVERRIDES... ; SRC_DIR is the reference checkout's ``src`` folder.
Three shims, nothing else: ``clearml`` is stubbed (the configs name no ClearML project, so
``run.py`` never calls it), ``pytorch_lightning.Trainer(gpus=1)`` becomes a CPU trainer that logs
each validation to ``lightning_logs/version_*/metrics.csv`` in the working directory (Hydra does not
change it here; paper_code.py starts this script in the run folder), and every
generator is seeded with SEED (``run.py`` seeds nothing). Runs inside a separate virtual
environment (pytorch_lightning, hydra-core, omegaconf, pandas, ``recommenders`` without its
dependencies, transformers, torch); called by paper_code.py, never imported by recguard.
"""

import os
import runpy
import sys
import types

src_dir = os.path.abspath(sys.argv[1])
seed = int(sys.argv[2])
threads = int(sys.argv[3])
overrides = sys.argv[4:]

clearml = types.ModuleType("clearml")
clearml.Task = None
sys.modules["clearml"] = clearml

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.loggers import CSVLogger  # noqa: E402

torch.set_num_threads(threads)
pl.seed_everything(seed)
LightningTrainer = pl.Trainer


class CPUTrainer(LightningTrainer):
    """The paper's trainer on the CPU: ``gpus`` dropped, one CPU device, a CSV log in the run folder."""

    def __init__(self, *args, gpus=None, **kwargs):
        super().__init__(*args, accelerator="cpu", devices=1, logger=CSVLogger(save_dir="."), **kwargs)


pl.Trainer = CPUTrainer
sys.path.insert(0, src_dir)
sys.argv = [os.path.join(src_dir, "run.py"), *overrides]
runpy.run_path(sys.argv[0], run_name="__main__")
