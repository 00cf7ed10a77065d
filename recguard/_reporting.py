"""What every recguard HTML report shares: one Jinja2 page template and matplotlib figures
drawn through the object API.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas directly, so a
report never imports ``matplotlib.pyplot``, never calls ``matplotlib.use()``, and leaves the
plotting backend and pyplot's figure list of a notebook user's kernel as they were.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

__all__ = ["Card", "Table", "Section", "figure", "png", "COLORS", "render_page"]

# matplotlib's tab10, by value (no colormap lookup needed)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class Card:
    value: str
    label: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    highlight: set[int] = field(default_factory=set)  # row indices drawn highlighted
    left: set[int] = field(default_factory=lambda: {0})  # left-aligned column indices


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs
    table: Table | None = None
    note: str | None = None
    warn: str | None = None
    images: list[str] = field(default_factory=list)  # data URIs from png()


def figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw):
    """A standalone ``Figure`` and its axes (``squeeze`` as in ``plt.subplots``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(nrows, ncols, **kw)


def png(fig) -> str:
    """The figure as a PNG data URI (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_ENV = None


def render_page(title: str, *, subtitle: str = "", cards: list[Card] | None = None, sections: list[Section]) -> str:
    """One self-contained HTML page (styles inline, plots embedded)."""
    global _ENV
    if _ENV is None:
        from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

        _ENV = Environment(loader=PackageLoader("recguard", "templates"), autoescape=select_autoescape(["html", "j2"]),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return _ENV.get_template("page.html.j2").render(title=title, subtitle=subtitle, cards=cards or [], sections=sections)
