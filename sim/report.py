"""The demo's HTML report: click-through over time for treatment, control and the oracle;
click-through per hidden taste cluster; and which artwork tone each cluster was shown."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bandit.contracts.events import GROUPS
from bandit.measurement.stats import lift, ratio_rate
from replay.charts import figure_html
from sim.summary import final_summary
from sim.tally import Tally, columns
from sim.world import World

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = {"treatment": "#1f77b4", "control": "#ff7f0e", "oracle": "#2ca02c"}


def write(out: Path, tally: Tally, world: World, replay_report: Path | None) -> Path:
    """Write `out/report.html` (and each plot as `out/plots/*.png`); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    records = tally.records()
    elapsed = max((r.at for r in records), default=0.0)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>artbandit demo</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
        "pre{background:#f6f6f6;padding:1em}</style></head><body>",
        "<h1>artbandit demo</h1>",
        f"<pre>{html.escape(final_summary(tally, elapsed))}</pre>",
    ]
    if replay_report is not None:
        link = html.escape(str(replay_report.relative_to(out)))
        parts.append(f"<p>Offline replay of the rewarded log: <a href='{link}'>{link}</a></p>")
    if records:
        data = columns(records)
        parts.append("<h2>Click-through over time</h2>")
        parts.append(figure_html(_over_time(data), "CTR over time", str(plots / "ctr.png")))
        parts.append("<h2>Per taste cluster</h2>")
        parts.append(
            figure_html(_per_taste(data, world), "CTR per taste", str(plots / "tastes.png"))
        )
        parts.append(
            "<h2>Artwork shown per taste cluster</h2><p>Share of impressed artworks "
            "by tone, for people of each (hidden) taste cluster.</p>"
        )
        parts.append(
            figure_html(_artwork_share(tally, world), "artwork share", str(plots / "artwork.png"))
        )
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def _over_time(data: dict[str, np.ndarray]) -> Figure:
    import matplotlib.pyplot as plt

    end = float(data["at"].max()) + 1e-9
    edges = np.linspace(0.0, end, min(16, max(2, int(end // 5))) + 1)
    middle = (edges[:-1] + edges[1:]) / 2
    bucket = np.clip(np.searchsorted(edges, data["at"], side="right") - 1, 0, len(middle) - 1)
    figure, axes = plt.subplots(figsize=(8, 3.6))
    for name in (*GROUPS, "oracle"):
        values, lows, highs = [], [], []
        for b in range(len(middle)):
            mask = bucket == b
            if name != "oracle":
                mask &= data["group"] == name
            r = ratio_rate(
                data["oracle" if name == "oracle" else "clicks"][mask], data["impressions"][mask]
            )
            values.append(r.value)
            lows.append(r.low)
            highs.append(r.high)
        axes.plot(
            middle,
            values,
            marker="o",
            ms=3,
            color=COLORS[name],
            label=name if name != "oracle" else "oracle (expected)",
        )
        if name != "oracle":
            axes.fill_between(middle, lows, highs, color=COLORS[name], alpha=0.15)
    axes.set_xlabel("seconds of traffic")
    axes.set_ylabel("clicks per impression")
    axes.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    return figure


def _per_taste(data: dict[str, np.ndarray], world: World) -> Figure:
    import matplotlib.pyplot as plt

    tastes = range(len(world.tastes))
    rates = {}
    for group in GROUPS:
        for taste in tastes:
            mask = (data["group"] == group) & (data["taste"] == taste)
            rates[group, taste] = ratio_rate(data["clicks"][mask], data["impressions"][mask])
    figure, axes = plt.subplots(figsize=(8, 3.4))
    x = np.arange(len(world.tastes))
    for i, group in enumerate(GROUPS):
        bars = [rates[group, taste] for taste in tastes]
        errors = [0.0 if not np.isfinite(r.low) else (r.high - r.low) / 2 for r in bars]
        axes.bar(
            x + (i - 0.5) * 0.38,
            [r.value for r in bars],
            0.38,
            yerr=errors,
            capsize=2,
            color=COLORS[group],
            label=group,
        )
    labels = []
    for taste, name in enumerate(world.tastes):
        up = lift(rates["treatment", taste], rates["control", taste]).value
        labels.append(f"{name}\n{up:+.0%}" if np.isfinite(up) else name)
    axes.set_xticks(x, labels, fontsize=8)
    axes.set_ylabel("clicks per impression")
    axes.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    axes.set_title("CTR by hidden taste cluster (lift under each name)", fontsize=9)
    axes.legend(fontsize=8)
    return figure


def _artwork_share(tally: Tally, world: World) -> Figure:
    import matplotlib.pyplot as plt

    figure, all_axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for axes, (g, group) in zip(all_axes, enumerate(GROUPS), strict=True):
        counts = tally.tones[g].astype(float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(share.shape[0]):
            for j in range(share.shape[1]):
                axes.text(
                    j,
                    i,
                    f"{share[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
        axes.set_xticks(range(len(world.tastes)), world.tastes, rotation=30, fontsize=8)
        axes.set_yticks(range(len(world.tastes)), world.tastes, fontsize=8)
        axes.set_xlabel("artwork tone shown")
        axes.set_title(group, fontsize=9)
    all_axes[0].set_ylabel("people whose taste is")
    return figure
