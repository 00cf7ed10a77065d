"""Victim quality and cost on ML-1M (shared SASRec-format file), full ranking, leave-one-out.

Usage:  python benchmarks/victims_ml1m.py --model sasrec [--epochs 200] [--threads 2] [--set KEY=VALUE ...]

Writes benchmarks/results/victims_ml1m_<model>.json: test HR@10/NDCG@10 (best
validation epoch; the whole history filtered, and in ``test_window_filter`` only the
input window's items, as before training revision 6), wall time, epochs, peak resident memory. Published figures on
this exact file (REFERENCES.md): SASRec-CE NDCG@10 0.1821, BERT4Rec 0.1537.
"""

from __future__ import annotations

import argparse
import time

from _common import parse_args, parse_setting, peak_rss_mb, require_ml1m, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sasrec", choices=["sasrec", "bert4rec", "gru4rec"])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--dropout", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--batching", choices=["length", "random"], default=None, help="victim config 'batching' (default length)")
    ap.add_argument("--init-std", type=float, default=None,
                    help="victim config 'init_std': every Linear/Embedding weight ~ N(0, std) (0.02 in Klenitskiy & Vasilev's code)")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training after this long (best weights kept)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="any other victim setting, e.g. --set block=post_ln --set precision=bfloat16")
    args = parse_args(ap)
    import recguard

    t0 = time.perf_counter()
    data = recguard.data.load("ml-1m", path=require_ml1m())
    load_s = time.perf_counter() - t0
    cfg = dict(hidden=64, num_blocks=2, max_len=200, epochs=args.epochs, patience=args.patience, eval_every=args.eval_every)
    if args.model == "gru4rec":
        cfg.pop("num_blocks")
    if args.lr:
        cfg["lr"] = args.lr
    if args.dropout is not None:
        cfg["dropout"] = args.dropout
    if args.batching:
        cfg["batching"] = args.batching
    if args.init_std is not None:
        cfg["init_std"] = args.init_std
    cfg.update(dict(parse_setting(s) for s in args.settings))
    victim = recguard.make_victim(args.model, **cfg)
    split = data.split()
    t1 = time.perf_counter()
    deadline = None if args.max_minutes is None else time.perf_counter() + 60 * args.max_minutes
    victim.fit(split, rng=args.seed, progress=True, on_epoch_end=lambda e, v: deadline is not None and time.perf_counter() > deadline)
    train_s = time.perf_counter() - t1
    test = recguard.evaluate(victim, split, which="test", ks=(10, 20))
    # the same model under the filter of training revisions <= 5 (only the input window's items)
    test_window = recguard.evaluate(victim, split, which="test", ks=(10, 20), seen="window")
    write_result(
        f"victims_ml1m_{args.model}{args.tag}",
        {
            "model": args.model,
            "config": victim.config.to_dict(),
            "load_s": load_s,
            "train_wall_s": train_s,
            "epochs_run": victim.fit_info_["epochs_run"],
            "stopped_by_time_limit": args.max_minutes is not None and train_s > 60 * args.max_minutes,
            "best_epoch": victim.fit_info_["best_epoch"],
            "s_per_epoch": train_s / victim.fit_info_["epochs_run"],
            "test": test,
            "test_window_filter": test_window,
            "peak_rss_mb": peak_rss_mb(),
            "history": victim.history_,
        },
    )


if __name__ == "__main__":
    main()
