"""``recguard forensics``: which training users pushed an item into people's lists."""

from __future__ import annotations

import html
from pathlib import Path

import typer

from ..errors import ConfigError
from ._common import ModelOpt, PathOpt, print_table, victim_dataset


def _ids(text: str | None, known: tuple[str, ...], what: str, param: str) -> list[int]:
    """Comma-separated external ids → internal indices (``known[i]`` is the external id of index ``i``)."""
    if not text:
        return []
    index = {k: i for i, k in enumerate(known)}
    out = []
    for token in (t.strip() for t in text.split(",")):
        if token not in index or (what == "item" and index[token] == 0):
            raise ConfigError(f"{what} {token!r} is not in the training data (ids as written in the data file)", param=param)
        out.append(index[token])
    return out


def _page(data, result, injected: set[str], k: int, by: str = "signed") -> str:
    """A self-contained HTML page: the top users, their influence, share of the items in their history, histories."""
    items = set(result.items)
    rows = []
    for rank, u in enumerate(result.top(k, by=by), start=1):
        history = data.train[u].tolist()
        share = sum(i in items for i in history) / max(1, len(history))
        uid = data.train.user_ids[u] if data.train.user_ids else str(u)
        mark = "yes" if uid in injected else ("" if not injected else "no")
        shown = " ".join(html.escape(data.train.item_ids[i]) for i in history[-30:])
        rows.append(f"<tr><td>{rank}</td><td>{html.escape(uid)}</td><td>{result.scores[u]:.4g}</td><td>{share:.0%}</td>"
                    f"<td>{mark}</td><td class=h>{'… ' if len(history) > 30 else ''}{shown}</td></tr>")
    names = ", ".join(html.escape(data.train.item_ids[i]) for i in result.items)
    queries = ", ".join(f"{html.escape(data.train.item_ids[i])}: {len(q)}" for i, q in result.query_users.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>recguard forensics: {names}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}}
td.h{{font-family:monospace;font-size:85%}}</style></head><body>
<h1>Who pushed {names}?</h1>
<p>Training users ranked by TracIn influence on the items' scores for the users whose lists show them
(query users per item: {queries}); checkpoints of epochs {result.checkpoints or 'none (final weights only)'}.
A positive influence means training on the user raised those scores.</p>
<table><tr><th>#</th><th>user</th><th>influence</th><th>share of the items in the history</th><th>injected</th>
<th>history (latest 30)</th></tr>{''.join(rows)}</table></body></html>
"""


def forensics(
    model_dir: Path = typer.Option(..., "--model-dir", help="Saved victim (train it with --keep-checkpoints K for TracIn across "
                                   "training; without checkpoints only its final weights are traced)."),
    item: str = typer.Option(..., "--item", help="Item id(s), comma-separated, as written in the data file."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for forensics.json and forensics.html."),
    users: str | None = typer.Option(None, "--users", help="Query users (comma-separated ids); default: every user whose top-k "
                                     "list shows the item."),
    top_k: int = typer.Option(50, "--top-k", help="List length that decides whose list shows the item."),
    show: int = typer.Option(100, "--show", help="Most influential users written out."),
    rank: str = typer.Option("signed", "--rank", help="Order users by 'signed' influence (who raised the scores) or its "
                             "'magnitude' (who moved them most either way; finds a campaign whose influence flipped sign)."),
    injected: Path | None = typer.Option(None, "--injected", help="A file of known injected user ids (one per line) to mark."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="The training data (default: the victim's recorded "
                                       "dataset; pass the poisoned file when the victim was trained on one)."),
    path: Path | None = PathOpt,
    model: str | None = ModelOpt,
) -> None:
    """Rank training users by their influence on an item's score (TracIn over the scoring head)."""
    from .._io import atomic_write_json, atomic_write_text, claim_output_dir
    from ..probes import influence
    from ..probes.influence import check_ranking
    from ..victims import load

    check_ranking(rank, "--rank")  # before the victim loads and the tracing starts
    victim = load(model_dir, model=model)
    data = victim_dataset(victim, model_dir, dataset, path).split()
    items = _ids(item, data.train.item_ids, "item", "--item")
    query = _ids(users, tuple(data.train.user_ids or ()), "user", "--users") or None
    marked = set()
    if injected is not None:
        try:
            marked = {line.strip() for line in injected.read_text(encoding="utf-8").splitlines() if line.strip()}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{injected}: cannot read it ({exc})", param="--injected") from None
    claim_output_dir(out, "forensics")
    result = influence(victim, data, items, query_users=query, top_k=top_k)
    report = result.to_dict(data.train, k=show, by=rank)
    if marked:
        for row in report["top"]:
            row["injected"] = row.get("user_id") in marked
    atomic_write_json(out / "forensics.json", report)
    atomic_write_text(out / "forensics.html", _page(data, result, marked, show, by=rank))
    top = report["top"][:5]
    print_table([("items", ", ".join(data.train.item_ids[i] for i in result.items)),
                 ("query users", ", ".join(str(len(q)) for q in result.query_users.values())),
                 ("checkpoints", str(result.checkpoints or "final weights only")),
                 ("top users", ", ".join(f"{r.get('user_id', r['user'])} ({r['influence']:.3g})" for r in top)),
                 ("sign agreement", f"{result.info['sign_agreement']:.2f} (top 1% whose influence keeps its sign at every checkpoint)"),
                 ("seconds", f"{result.info['time_s']:.1f}")])
    if result.info["sign_agreement"] < 0.8:
        typer.echo("\nnote: the most influential users' influence changes sign between checkpoints; a campaign the model "
                   "has memorised can push an item early in training and pull it late. Read forensics.json's "
                   "per-checkpoint influence, and rank by magnitude as well as by sign (docs/probes.md).")
    typer.echo(f"\nreport: {out / 'forensics.html'}  (also forensics.json)")
