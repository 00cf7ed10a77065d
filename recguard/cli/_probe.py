"""``recguard probe``: sparse-autoencoder probe of a saved victim, with a JSON + HTML report."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import typer

from ._common import ModelOpt, PathOpt, print_table, victim_dataset


def probe(
    run: Path = typer.Argument(..., help="Saved victim (a folder from `recguard train` or an audit's models/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.json, report.html and the SAE (OUT/sae: safetensors + JSON)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset (default: the one recorded with the victim)."),
    path: Path | None = PathOpt,
    layer: str = typer.Option("representation", "--layer",
                              help="Activation site: representation or a layer name (block.0, final_norm, ...)."),
    k: int = typer.Option(8, "--k", help="Active latents per input (TopK)."),
    expansion: int = typer.Option(16, "--expansion", help="Latents per input dimension."),
    epochs: int = typer.Option(10, "--epochs", help="SAE training passes over every valid training position."),
    lr: float = typer.Option(1e-3, "--lr", help="SAE learning rate (Adam)."),
    prefixes: int = typer.Option(5, "--prefixes", help="Probe sequences per user for the concept dictionary."),
    ablate_top: int = typer.Option(12, "--ablate-top", help="Ablate this many of the most confident latents."),
    lm: Path | None = typer.Option(None, "--lm", help="Local Hugging Face causal-LM folder for one-line descriptions."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same report)."),
    model: str | None = ModelOpt,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
) -> None:
    """Train a TopK SAE on the victim's activations, build and validate a concept dictionary,
    ablate the most confident latents, and write OUT/report.json + OUT/report.html.

    Re-running with the same OUT and settings reuses the trained SAE (OUT/sae/).
    """
    import recguard
    from ..probes import SAEProbe
    from ..probes.report import probe_report, write_probe_report
    from ..victims import load

    from .._io import claim_output_dir

    victim = load(run, model=model)
    data = victim_dataset(victim, run, dataset, path)
    claim_output_dir(out, "probe-report", resumable=True)  # re-runs reuse its SAE; refuses anything else
    split = data.split()
    settings = dict(layer=layer, k=k, expansion=expansion, epochs=epochs, lr=lr, prefixes=prefixes, seed=seed)
    from .._io import atomic_write_json

    state_file, art = out / "probe_settings.json", out / "sae"
    t0 = time.perf_counter()
    pr = None
    if (art / "probe.json").exists() and state_file.exists() and json.loads(state_file.read_text()) == settings:
        pr = SAEProbe.load(art, victim, split)
        typer.echo(f"reusing the SAE in {art}")
    if pr is None:
        typer.echo(f"training a TopK SAE (k={k}, {expansion}x) on {layer} of {victim.architecture} ...")
        pr = SAEProbe(victim, **settings).fit(split, progress=progress)
        pr.save(art, overwrite=True)
        atomic_write_json(state_file, settings)
    fid = pr.fidelity()
    entries = pr.concepts(lm=lm)
    pr.save(art, overwrite=True)
    confident = sorted((e for e in entries if e.get("concept") is not None),
                       key=lambda e: (-e["confidence"], -(e.get("auc") or 0), e["latent"]))[:ablate_top]
    ablations = []
    for e in confident:
        ablations.append(pr.ablate(e["latent"], 0.0))
    prov = {"victim": str(run), "architecture": victim.architecture, "dataset": data.name, "data_fingerprint": data.fingerprint()[:16],
            "recguard": recguard.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "command": "recguard probe " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["probe"] else "recguard probe",
            "wall_time_s": round(time.perf_counter() - t0, 1)}
    report = probe_report(pr, ablations=ablations, provenance=prov)
    write_probe_report(report, out)
    dic = report["dictionary"]
    print_table([
        ("NDCG@10 clean / SAE / mean", f"{fid['ndcg_clean']:.4f} / {fid['ndcg_sae']:.4f} / {fid['ndcg_mean_ablated']:.4f}"),
        ("NDCG recovered", f"{fid['ndcg_recovered']:.3f}" if fid["ndcg_recovered"] is not None else "–"),
        ("FVU, L0, dead", f"{fid['fvu']:.3f}, {fid['l0']:.1f}, {100 * fid['dead_fraction']:.1f}%"),
        ("interpretable latents", f"{dic['interpretable']} / {dic['latents']} (mean AUC {dic['mean_auc'] or 0:.3f})"),
    ])
    typer.echo(f"report: {out / 'report.html'}")
