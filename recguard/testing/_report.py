"""JSON + HTML report of one robustness check (``--recguard-report DIR``)."""

from __future__ import annotations

import re
from pathlib import Path

from .._io import format_stamp, atomic_write_json, atomic_write_text
from ..errors import OutputExistsError

CHECK_FORMAT = "recguard-check"

__all__ = ["write_check_report"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120] or "check"


def _rows(result: dict) -> list[tuple[str, str]]:
    skip = {"per_seed", "message", "agreement"}
    return [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in result.items() if k not in skip]


def _per_seed_plot(per: list[dict], metric: str) -> str | None:
    """Clean vs poisoned value per seed (checks that measure both), as a data URI."""
    if not per or not all(isinstance(r.get("clean"), float) and isinstance(r.get("poisoned"), float) for r in per):
        return None
    from .._reporting import COLORS, figure, png

    fig, ax = figure(max(4.0, 1.2 * len(per) + 2), 2.8)
    x = range(len(per))
    ax.bar([i - 0.2 for i in x], [r["clean"] for r in per], 0.4, color="#999999", label="clean")
    ax.bar([i + 0.2 for i in x], [r["poisoned"] for r in per], 0.4, color=COLORS[0], label="poisoned")
    ax.set_xticks(list(x), [f"seed {r.get('seed', i)}" for i, r in enumerate(per)])
    ax.set_ylabel(metric)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def render_check_html(result: dict, name: str) -> str:
    from .._reporting import Section, Table, render_page

    ok = bool(result.get("passed"))
    sections = [Section("Result", table=Table([], [list(r) for r in _rows(result)], left={0, 1}),
                        note=result["message"] if ok else None, warn=None if ok else result["message"])]
    per = result.get("per_seed")
    if per:
        heads = list(per[0])
        rows = [[f"{r[h]:.4f}" if isinstance(r[h], float) else str(r[h]) for h in heads] for r in per]
        plot = _per_seed_plot(per, str(result.get("metric", "value")))
        sections.append(Section("Per seed", table=Table(heads, rows), images=[plot] if plot else []))
    return render_page(f"{name}: {'passed' if ok else 'FAILED'}", sections=sections)


def write_check_report(result: dict, out: str | Path, name: str) -> Path:
    """Write ``OUT/<name>.json`` and ``OUT/<name>.html`` atomically; returns the JSON path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = _safe(name)
    js, page = out / f"{stem}.json", out / f"{stem}.html"
    ours = js.is_file() and format_stamp(out, js.name) == CHECK_FORMAT
    for f in (js, page):  # replace only a report recguard wrote for this very check
        if (f.exists() or f.is_symlink()) and not ours:
            raise OutputExistsError(f"{f}: exists and is not a recguard check report; recguard will not replace it "
                                    "(use another --recguard-report folder)")
    result = {"format": CHECK_FORMAT, **result}
    atomic_write_json(js, result)
    atomic_write_text(out / f"{stem}.html", render_check_html(result, name))
    return out / f"{stem}.json"
