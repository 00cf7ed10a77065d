"""JSON + HTML report of one robustness check (``--recguard-report DIR``)."""

from __future__ import annotations

import html
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


def render_check_html(result: dict, name: str) -> str:
    from ..audit.report import _CSS

    esc = html.escape
    status = "passed" if result.get("passed") else "FAILED"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(name)}: {status}</h1>", f"<p class='{'note' if result.get('passed') else 'warn'}'>{esc(result['message'])}</p>",
             "<table><tbody>"]
    parts += [f"<tr><td>{esc(k)}</td><td style='text-align:left'>{esc(v)}</td></tr>" for k, v in _rows(result)]
    parts.append("</tbody></table>")
    per = result.get("per_seed")
    if per:
        heads = list(per[0])
        parts.append("<h2>Per seed</h2><table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr></thead><tbody>")
        for r in per:
            cells = (f"{r[h]:.4f}" if isinstance(r[h], float) else str(r[h]) for h in heads)
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
