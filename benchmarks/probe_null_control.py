"""Null control for the concept dictionary (issue 7): how many latents pass validation by chance.

Usage:
    python benchmarks/probe_null_control.py --victim DIR --probe runs/bench/probe_ml1m/sae [--seeds 0,1] [--threads 1]

Loads a probe saved by benchmarks/probe_ml1m.py and reruns the dictionary pipeline (same
concept vocabulary, same building/held-out users) on latent activations shuffled across
probe sequences. Result: benchmarks/results/probe_null_control.json.
"""

from __future__ import annotations

import argparse

from _common import ml1m_victim, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim", required=True)
    ap.add_argument("--probe", default="runs/bench/probe_ml1m/sae")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    data, split, victim = ml1m_victim(args.victim, args.threads)
    from recguard.probes import SAEProbe

    probe = SAEProbe.load(args.probe, victim, split)
    real = probe.dictionary_summary()
    nulls = [probe.null_control(seed=int(s)) for s in args.seeds.split(",")]
    write_result("probe_null_control", {"victim": args.victim, "probe": args.probe, "k": probe.sae_.k,
                                        "real": real, "null": nulls})


if __name__ == "__main__":
    main()
