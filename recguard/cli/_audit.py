"""``recguard audit``, ``recguard report`` and ``recguard attack``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import ConfigError
from ._common import KCoreOpt, MinRatingOpt, PathOpt, load_dataset, print_columns, print_table
from ._train import _parse_sets, recipe_settings


def _csv(value: str | None, cast=str) -> tuple | None:
    if value is None:
        return None
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"could not parse {value!r} as a comma-separated list") from None


def audit(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (results.json, report.md, report.html, cells/)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML audit spec; flags given here override it."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset name or file (default ml-100k)."),
    path: Path | None = PathOpt,
    model: str | None = typer.Option(None, "--model", "-m", help="Victim: sasrec, bert4rec, gru4rec, or your own model as "
                                     "MODULE:FACTORY (FACTORY(num_items, **config) returns an unfitted victim; --set fills config)."),
    attacks: str | None = typer.Option(None, "--attacks", "-a", help="Comma-separated attack names (default random, popular, "
                                       "segment, surrogate)."),
    budgets: str | None = typer.Option(None, "--budgets", "-b", help="Comma-separated fractions of genuine users, e.g. 0.01,0.03."),
    defense: str | None = typer.Option(None, "--defense", help="Comma-separated defense names (default none; docs/defenses.md)."),
    defense_param: list[str] = typer.Option([], "--defense-param", help="An option of one defense, DEFENSE.KEY=VALUE with a JSON or "
                                            "plain value (repeatable), e.g. pca.rule=top, lorec-detect.max_flag_share=0.01."),
    known: str | None = typer.Option(None, "--known", help="Attack the text defenses simulate to learn from (random, popular, segment)."),
    encoder: str | None = typer.Option(None, "--encoder", help="Text encoder for llm4dec/lorec: minilm (bundled) or a "
                                       "Hugging Face model directory."),
    user_text: str | None = typer.Option(None, "--user-text", help="prompt (LoRec's user prompt, default) or items (mean of "
                                         "title embeddings, much faster)."),
    defense_controls: bool | None = typer.Option(None, "--defense-controls/--no-defense-controls",
                                                    help="Also train each defense on the clean data (one cell per defense "
                                                    "and seed): its own effect on the targets, and the removal net of it."),
    forensics: int | None = typer.Option(None, "--forensics", help="Trace the injected users by training-data influence in "
                                         "every undefended poisoned cell, with this many checkpoints (0 = off): the recall "
                                         "of the fakes among the top 1% most influential users for the targets."),
    seeds: str | None = typer.Option(None, "--seeds", "-s", help="Comma-separated seeds, e.g. 0,1,2."),
    targets: str | None = typer.Option(None, "--targets", help="unpopular, popular, or comma-separated item ids."),
    order: str | None = typer.Option(None, "--order", help="Target placement: interleave, target_last, random."),
    surrogate: str | None = typer.Option(None, "--surrogate", help="victim (white-box), retrain, or a saved victim directory."),
    inject: list[Path] = typer.Option([], "--inject", help="JSON file of externally crafted fake users (repeatable)."),
    set_: list[str] = typer.Option([], "--set", help="Victim config KEY=VALUE (e.g. --set max_len=50)."),
    recipe_name: str | None = typer.Option(None, "--recipe", help="Named training recipe for the victim (recsys23: the "
                                           "SASRec-CE paper's ML-1M settings); the config file's model_config and --set "
                                           "override its settings."),
    extraction: list[str] = typer.Option([], "--extraction", help="Option of the `extracted` attack's model extraction, KEY=VALUE "
                                         "(mode=few-shot, num_sequences=5000, k=100, surrogate=gru4rec, epochs=30, ...)."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Worker processes of the local backend (each gets its share of "
                                    "the CPU threads); the numbers do not depend on it, only on the threads per cell."),
    backend: str | None = typer.Option(None, "--backend", help="Where cells run: sequential, local (worker processes; the "
                                       "default with --jobs > 1) or ray (pip install 'recguard[ray]')."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster: auto, or ray://HOST:10001 (default: start a local "
                                       "Ray)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads per cell (default: the machine's threads shared "
                                       "out between local workers; 1 per Ray task)."),
    max_retries: int | None = typer.Option(None, "--max-retries", help="Ray: reruns of a cell whose worker died (default 3)."),
    transport: str | None = typer.Option(None, "--transport", help="Ray: how clean victims reach the cells that reuse them: "
                                         "object-store (default; no shared disk needed) or shared (--out on a disk every "
                                         "node mounts at the same path)."),
    force_new: bool = typer.Option(False, "--force-new", help="--out holds a different audit: discard its cells and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Run (or resume) a poisoning audit and write JSON, Markdown and HTML reports."""
    from ..audit import AuditSpec, make_backend, read_toml, run_audit

    spec, execution = read_toml(config) if config else (AuditSpec(), {})
    plain = {"dataset": dataset, "path": None if path is None else str(path.resolve()), "model": model, "order": order,
             "defense_controls": defense_controls, "surrogate": surrogate, "inject": tuple(str(p) for p in inject) or None,
             "forensics": forensics}
    changes: dict = {k: v for k, v in plain.items() if v is not None}
    for key, val, cast in (("attacks", attacks, str), ("budgets", budgets, float), ("defenses", defense, str), ("seeds", seeds, int)):
        parsed = _csv(val, cast)
        if parsed is not None:
            changes[key] = parsed
    if targets is not None:
        changes.update(_targets_option(targets))
    text_opts = {k: v for k, v in (("known", known), ("encoder", encoder), ("user_text", user_text)) if v is not None}
    if text_opts or defense_param:
        changes["defense_params"] = _defense_params(spec, changes.get("defenses", spec.defenses), text_opts, defense_param)
    if set_ or recipe_name:
        changes["model_config"] = {**recipe_settings(recipe_name, model or spec.model), **spec.model_config, **_parse_sets(set_)}
    if extraction:
        changes["extraction"] = {**spec.extraction, **_parse_sets(extraction)}
    if changes:
        spec = spec.replace(**changes)
    given = {k: v for k, v in (("backend", backend), ("jobs", jobs), ("threads", threads), ("address", address),
                               ("max_retries", max_retries), ("transport", transport)) if v is not None}
    execution = {**execution, **given}  # flags override the TOML file
    n_jobs = execution.pop("jobs", 1)
    chosen = make_backend(execution.pop("backend", None), jobs=n_jobs, **execution)
    results = run_audit(spec, out, progress=progress, command=["recguard", *sys.argv[1:]], jobs=n_jobs, backend=chosen,
                        force_new=force_new)
    _print_summary(results)
    typer.echo(f"\nreport: {Path(out) / 'report.html'}  (also report.md, results.json)")


def _targets_option(targets: str) -> dict:
    """``--targets``: a strategy (``unpopular``/``popular``) or comma-separated ids (which also set ``num_targets``)."""
    if targets in ("unpopular", "popular"):
        return {"targets": targets}
    ids = [int(t) for t in _csv(targets, int)]
    return {"targets": ids, "num_targets": len(ids)}


def fill_component_help() -> None:
    """Name every registered attack (with its threat model) and defense in the help of ``audit`` and
    ``attack``, from the registries. Called only when help is shown: the registries import torch."""
    import inspect

    from ..attacks.poisoning import ATTACKS
    from ..defenses import DEFENSES

    attacks = ", ".join(f"{n} ({cls.threat_model})" for n, cls in ATTACKS.items())
    defenses = ", ".join(DEFENSES)
    options = inspect.signature(audit).parameters
    options["attacks"].default.help = (f"Comma-separated attacks: {attacks}. Model-guided attacks craft with --surrogate; "
                                       "NAME@extracted (extracted = surrogate@extracted) steals the surrogate of model-guided "
                                       "attack NAME through the victim's top-k API.")
    options["defense"].default.help = f"Comma-separated defenses: {defenses} (docs/defenses.md)."
    inspect.signature(attack).parameters["name"].default.help = f"One of {attacks}."


def _defense_params(spec, chosen, text_opts: dict, items: list[str]) -> dict:
    """The spec's defense options plus the text options (for every defense that reads user text)
    and each ``--defense-param DEFENSE.KEY=VALUE``."""
    import json

    from ..defenses import DEFENSES

    params = {d: dict(spec.defense_params.get(d, {})) for d in spec.defense_params}
    if text_opts:
        readers = [d for d in chosen if getattr(DEFENSES.get(d), "reads_text", False)]
        if not readers:
            every = ", ".join(d for d, cls in DEFENSES.items() if getattr(cls, "reads_text", False))
            raise ConfigError(f"--known/--encoder/--user-text only apply to defenses that read user text ({every})", param="--known")
        for d in readers:
            params[d] = {**params.get(d, {}), **text_opts}
    for item in items:
        key, eq, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not (eq and dot and name and option):
            raise ConfigError(f"expected DEFENSE.KEY=VALUE, e.g. pca.rule=top; got {item!r}", param="--defense-param")
        if name not in chosen:
            raise ConfigError(f"{item!r} sets an option of {name!r}, which is not among the audit's defenses "
                              f"({', '.join(chosen)})", param="--defense-param")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        params.setdefault(name, {})[option] = parsed
    return params


def _print_summary(results: dict) -> None:
    from ..audit.report import summary_table

    clean = results["clean"]
    typer.echo(f"clean victim: NDCG@10 {clean['NDCG@10']['mean']:.4f}  HR@10 {clean['HR@10']['mean']:.4f}")
    print_columns(*summary_table(results))


def report(out: Path = typer.Argument(..., help="An audit output folder holding results.json.")) -> None:
    """Re-render report.md and report.html from results.json."""
    from ..audit import rerender

    results = rerender(out)
    _print_summary(results)
    typer.echo(f"\nreport: {Path(out) / 'report.html'}")


def compare(
    folders: list[Path] = typer.Argument(..., help="Two or more audit folders of one dataset and model (e.g. one per API defense)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for compare.json, compare.md and compare.html."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier `recguard compare` output at --out."),
) -> None:
    """Compare finished audits side by side: the stolen model's agreement, each API defense's cost
    and the lift it removes against the undefended audit, paired by seed."""
    from .._io import claim_output_dir
    from ..audit.compare import compare_audits, comparison_table, render_comparison, write_comparison

    cmp = compare_audits(folders)
    render_comparison(cmp)  # a rendering failure leaves --out untouched
    claim_output_dir(out, "comparison", overwrite=overwrite)
    write_comparison(cmp, out)
    print_columns(*comparison_table(cmp))
    typer.echo(f"\nreport: {Path(out) / 'compare.html'}")


def attack(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for poisoned.txt, inject.json and attack.json."),
    name: str = typer.Option("random", "--attack", "-a", help="An attack name."),
    dataset: str = typer.Option("ml-100k", "--dataset", "-d", help="Dataset name or file."),
    path: Path | None = PathOpt,
    min_rating: float | None = MinRatingOpt,
    k_core: int | None = KCoreOpt,
    budget: float = typer.Option(0.01, "--budget", "-b", help="Fake users as a fraction of genuine users."),
    targets: str = typer.Option("unpopular", "--targets", help="unpopular, popular, or comma-separated item ids."),
    num_targets: int = typer.Option(5, "--num-targets", help="How many targets to draw."),
    order: str = typer.Option("interleave", "--order", help="interleave, target_last or random."),
    surrogate: Path | None = typer.Option(None, "--surrogate", help="Saved white-box victim (for --attack surrogate)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output of an earlier `recguard attack` at --out."),
) -> None:
    """Poison the training part of a dataset and write it to files.

    poisoned.txt holds `user item` lines (internal item ids 1..N) of the leave-one-out
    training data plus the fake users; inject.json holds the fake users in LoRec's layout
    (replay it with `recguard audit --inject`).
    """
    from .._io import atomic_write_json, atomic_write_text, claim_output_dir
    from ..attacks.poisoning import ModelGuidedAttack, make_attack
    from ..victims import load as load_victim

    claim_output_dir(out, "attack", overwrite=overwrite)
    data = load_dataset(dataset, path, min_rating, k_core)
    tg = targets if targets in ("unpopular", "popular") else list(_csv(targets, int))
    atk = make_attack(name, budget=budget, targets=tg, num_targets=num_targets if isinstance(tg, str) else len(tg), order=order)
    if isinstance(atk, ModelGuidedAttack):
        if surrogate is None:
            raise ConfigError(f"the {name} attack needs --surrogate DIR (a victim saved by `recguard train`)", param="--surrogate")
        atk = atk.with_surrogate(load_victim(surrogate))
    train = data.split().train
    result = atk.poison(train, rng=seed)
    # users are numbered 1..U (genuine, in dataset order) then U+1.. (fake): readable by read_user_item
    lines = [f"{u} {int(i)}" for u, seq in enumerate(result.data, start=1) for i in seq]
    atomic_write_text(out / "poisoned.txt", "\n".join(lines) + "\n")
    atomic_write_json(out / "inject.json", result.to_inject_json())
    atomic_write_json(out / "attack.json", {**result.meta, "targets": result.targets.tolist(), "seed": seed,
                                            "fake_user_numbers": (result.fake_users + 1).tolist(),
                                            "clean_train_fingerprint": train.fingerprint(),
                                            "poisoned_fingerprint": result.data.fingerprint()})
    print_table([("attack", name), ("fake users", str(len(result.fake_users))), ("targets", ", ".join(map(str, result.targets))),
                 ("written", str(out))])
