"""Charts the HTML reports share: estimates with intervals on one axis, where an interval
too wide to read (a target the log hardly sees) is clipped at the axis with a marker
instead of squeezing every other interval into a line, and figures inlined as PNG."""

from __future__ import annotations

import base64
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BLUE, RED, GREEN, GREY, ORANGE = "#3465a4", "#c4302b", "#3a8a3a", "#888888", "#c60"
WIDE = 4.0  # an interval wider than this many times the median is clipped at the axis
CLIPPED_NOTE = (
    "a red ◂ or ▸ at the edge: the interval runs past the axis (a target the log hardly "
    "sees); a red figure: its value, off the axis"
)


@dataclass(frozen=True)
class Interval:
    """One row of an interval chart."""

    label: str
    value: float
    low: float
    high: float
    colour: str = BLUE


def limits(rows: Sequence[Interval], references: Sequence[float] = ()) -> tuple[float, float]:
    """The axis: every reference, and every row whose interval is no wider than `WIDE` times
    the median width, with a margin. A wider row (a target the log hardly sees) does not
    stretch it: its interval, and its value if outside, are clipped to it."""
    widths = [r.high - r.low for r in rows if math.isfinite(r.high - r.low)]
    typical = statistics.median(widths) if widths else 0.0
    points = list(references)
    for r in rows:
        width = r.high - r.low
        if typical == 0.0 or (math.isfinite(width) and width <= WIDE * typical):
            points += [r.value, r.low, r.high]
    points = [p for p in points if math.isfinite(p)]
    if not points:  # nothing but wild rows: show their values
        points = [r.value for r in rows if math.isfinite(r.value)] or [0.0, 1.0]
    low, high = min(points), max(points)
    margin = (high - low) * 0.08 or max(abs(high), 1.0) * 0.05
    return low - margin, high + margin


def intervals_figure(
    rows: Sequence[Interval],
    title: str,
    xlabel: str,
    references: Mapping[str, tuple[float, str]] | None = None,
) -> Figure:
    """One dot and interval per row, top to bottom; `references` are labelled vertical
    lines (name -> (value, colour)), named in a legend beside the plot so no label can sit
    on another or on the title."""
    import matplotlib.pyplot as plt

    references = dict(references or {})
    low, high = limits(rows, [v for v, _ in references.values()])
    figure, axes = plt.subplots(figsize=(11, 0.3 * len(rows) + 1.8))
    clipped = False
    for y, row in enumerate(rows):
        left, right = max(row.low, low), min(row.high, high)
        axes.plot([left, right], [y, y], color=row.colour, linewidth=1.6)
        if low <= row.value <= high:
            axes.plot(row.value, y, "o", color=row.colour)
        for edge, past, marker in ((low, row.low < low, "<"), (high, row.high > high, ">")):
            if past:
                axes.plot(edge, y, marker, color=RED, markersize=8, clip_on=False)
                clipped = True
        if not low <= row.value <= high and math.isfinite(row.value):
            below = row.value < low  # the figure sits inside the axis, by the marker
            axes.annotate(f"{row.value:.3g}", (low if below else high, y),
                          xytext=(10 if below else -10, 0), textcoords="offset points",
                          ha="left" if below else "right", va="center", fontsize=7,
                          color=RED)  # fmt: skip
    for name, (value, colour) in references.items():
        axes.axvline(value, linestyle="--", color=colour, label=name)
    axes.set_xlim(low, high)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
    axes.set_xlabel(xlabel + (f"\n{CLIPPED_NOTE}" if clipped else ""))
    axes.set_title(title)
    legend(axes, fontsize=8)  # the references, if any
    return figure


def legend(axes: Any, most: int = 10, fontsize: int = 7) -> None:
    """A legend beside the plot, unless there are too many lines to tell apart (a search)
    or none (a partitioned replay draws no learning curve)."""
    if 0 < len(axes.get_legend_handles_labels()[1]) <= most:
        axes.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def figure_html(figure: Any, alt: str, save_to: str | None = None) -> str:
    """The figure as an inline PNG, so a report is one self-contained file; `save_to` also
    writes the PNG there."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    if save_to is not None:
        with open(save_to, "wb") as fh:
            fh.write(buffer.getvalue())
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<p><img alt='{alt}' src='data:image/png;base64,{data}'></p>"
