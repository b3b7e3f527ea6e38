"""The lift scorecard (`artbandit report lift --html`): one card per slot that a product
owner can read at a glance. The verdict and every badge read always-valid intervals, the
ones that stay valid however often the report is looked at; the cumulative chart shows the
lift as the log grew, with both intervals, so a one-look interval that strays outside the
always-valid band is seen for what it is."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bandit.measurement.lift import SRM_ALPHA, SlotLift
from replay import charts
from replay.charts import figure_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
    ".card{border:1px solid #ccc;border-radius:8px;padding:1em 1.4em;margin:1.4em 0}"
    ".headline{font-size:28px;font-weight:600;margin:.2em 0}"
    ".badge{display:inline-block;border-radius:12px;padding:2px 10px;margin:2px 6px 2px 0;"
    "font-size:13px;color:white}.good{background:#3a8a3a}.bad{background:#c4302b}"
    ".neutral{background:#888}.warn-badge{background:#c60}"
    "table{border-collapse:collapse;font-size:13px;margin:.6em 0}"
    "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:13px}"
    ".warn{color:#a33;font-size:13px}"
)


def to_html(
    report: Sequence[SlotLift], over_time: Sequence[tuple[float, list[SlotLift]]], source: str
) -> str:
    """The scorecard: `report` as it stands, `over_time` (`lift_over_time`) for the charts."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>artbandit lift</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Lift scorecard: {html.escape(source)}</h1>",
        "<p class='note'>Treatment (the learning policy) against the control holdout (the "
        "editorial default), intent-to-treat, people as units. Verdicts and badges read the "
        "always-valid 95% interval, valid however often this page is looked at.</p>",
    ]
    for result in report:
        parts.append(_card(result, [(ts, _match(r, result)) for ts, r in over_time]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _match(results: list[SlotLift], like: SlotLift) -> SlotLift | None:
    return next(
        (r for r in results
         if r.slot == like.slot and r.expected_control_share == like.expected_control_share),
        None,
    )  # fmt: skip


def _card(result: SlotLift, history: list[tuple[float, SlotLift | None]]) -> str:
    x = result.lift
    period = (
        f" (holdout {result.expected_control_share:.0%})" if result.holdout_from == "log" else ""
    )
    if math.isfinite(x.low):
        headline = (
            f"{x.value:+.1%} reward per decision "
            f"<span class='note'>always-valid [{x.sequence.low:+.1%}, {x.sequence.high:+.1%}]"
            f", one look [{x.low:+.1%}, {x.high:+.1%}]</span>"
        )
    else:
        headline = "not enough data yet"
    parts = [
        f"<div class='card'><h2>{html.escape(result.slot)}{period}</h2>",
        f"<div class='headline'>{headline}</div>",
        "<div>" + "".join(_badge(*b) for b in _badges(result)) + "</div>",
        _groups_table(result),
    ]
    if result.guardrails:
        parts.append(_guardrails_table(result))
    parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in result.warnings]
    points = [(ts, r) for ts, r in history if r is not None and math.isfinite(r.lift.low)]
    if len(points) >= 2:
        parts.append(figure_html(_cumulative_figure(result.slot, points), "cumulative lift"))
    parts.append("</div>")
    return "\n".join(parts)


def _badges(result: SlotLift) -> list[tuple[str, str, str]]:
    """(text, kind, explanation) per badge: the verdict, sample ratio, calibration."""
    x = result.lift.sequence
    if not math.isfinite(result.lift.low):
        verdict = ("no verdict: too few decisions", "neutral", "")
    elif x.low > 0:
        verdict = ("treatment wins", "good", "the always-valid interval is above 0")
    elif x.high < 0:
        verdict = ("treatment loses", "bad", "the always-valid interval is below 0")
    else:
        verdict = ("no difference shown yet", "neutral", "the always-valid interval covers 0")
    if result.holdout_from == "none":
        ratio = ("sample ratio: unchecked", "neutral", "no holdout fraction known")
    elif result.srm_p_value < SRM_ALPHA:
        ratio = ("sample ratio MISMATCH", "bad", f"p = {result.srm_p_value:.1e}")
    else:
        ratio = ("sample ratio ok", "good", f"control {result.control_share:.1%}, p = "
                 f"{result.srm_p_value:.2f}")  # fmt: skip
    badges = [verdict, ratio]
    for gap in result.calibration:
        if gap.flagged:
            kind, text = "bad", f"calibration {gap.estimator}: DISAGREES"
        elif gap.judged:
            kind, text = "good", f"calibration {gap.estimator}: agrees"
        else:
            kind, text = "neutral", f"calibration {gap.estimator}: not judged"
        badges.append((text, kind, gap.describe()))
    falls = [g.outcome for g in result.guardrails if g.flagged]
    down = [g.outcome for g in result.guardrails if not g.flagged and g.lift.sequence.high < 0]
    if falls:
        badges.append((f"guardrail FALLS: {', '.join(falls)}", "bad",
                       "falls while the reward rises: check the reward weights"))  # fmt: skip
    if down:
        why = "lower in treatment (always-valid), while the reward does not rise"
        badges.append((f"guardrail down: {', '.join(down)}", "warn", why))
    if result.guardrails and not falls and not down:
        badges.append(("guardrails hold", "good", ", ".join(g.outcome for g in result.guardrails)))
    return badges


def _badge(text: str, kind: str, title: str) -> str:
    kind = "warn-badge" if kind == "warn" else kind
    return f"<span class='badge {kind}' title='{html.escape(title)}'>{html.escape(text)}</span>"


def _groups_table(result: SlotLift) -> str:
    rows = ["<table><tr><th>group</th><th>decisions</th><th>reward per decision</th>"
            "<th>95% interval</th></tr>"]  # fmt: skip
    for name, group in (("treatment", result.treatment), ("control", result.control)):
        r = group.rate
        interval = f"[{r.low:.4f}, {r.high:.4f}]" if math.isfinite(r.low) else "-"
        rows.append(f"<tr><td>{name}</td><td>{group.decisions:,}</td><td>{r.value:.4f}</td>"
                    f"<td>{interval}</td></tr>")  # fmt: skip
    return "".join(rows) + "</table>"


def _guardrails_table(result: SlotLift) -> str:
    rows = ["<table><tr><th>guardrail (per decision)</th><th>treatment</th><th>control</th>"
            "<th>lift</th><th>always-valid</th><th></th></tr>"]  # fmt: skip
    for g in result.guardrails:
        x = g.lift
        change, interval = "-", "-"
        if math.isfinite(x.low):
            change = f"{x.value:+.1%}"
            interval = f"[{x.sequence.low:+.1%}, {x.sequence.high:+.1%}]"
        flag = ""
        if g.flagged:
            flag = _badge("FALLS", "bad", "falls while the reward rises")
        elif math.isfinite(x.low) and x.sequence.high < 0:
            flag = _badge("down", "warn", "lower in treatment (always-valid)")
        rows.append(f"<tr><td>{g.outcome}</td><td>{g.treatment.value:.4f}</td>"
                    f"<td>{g.control.value:.4f}</td><td>{change}</td><td>{interval}</td>"
                    f"<td>{flag}</td></tr>")  # fmt: skip
    return "".join(rows) + "</table>"


def _cumulative_figure(slot: str, points: list[tuple[float, SlotLift]]) -> Figure:
    import matplotlib.pyplot as plt
    import numpy as np

    times = np.asarray([round(ts * 1000) for ts, _ in points], dtype="datetime64[ms]")
    lifts = [r.lift for _, r in points]
    figure, axes = plt.subplots(figsize=(10, 3.4))
    axes.fill_between(times, [x.sequence.low for x in lifts], [x.sequence.high for x in lifts],
                      color=charts.BLUE, alpha=0.18, label="always-valid 95%")  # fmt: skip
    axes.plot(times, [x.low for x in lifts], ":", color=charts.GREY, label="one look 95%")
    axes.plot(times, [x.high for x in lifts], ":", color=charts.GREY)
    axes.plot(times, [x.value for x in lifts], "o-", color=charts.BLUE, markersize=3,
              label="lift")  # fmt: skip
    axes.axhline(0.0, color="#444", linewidth=0.8)
    # the first looks' intervals are wide: they may run off the axis, as in every chart
    axes.set_ylim(*charts.limits([charts.Interval("", x.value, x.low, x.high) for x in lifts]))
    axes.yaxis.set_major_formatter(lambda v, _: f"{v:+.0%}")
    axes.set_ylabel("lift, cumulative")
    axes.set_xlabel("decision time (UTC)")
    axes.set_title(f"{slot}: lift as the log grew")
    charts.legend(axes, fontsize=8)
    figure.autofmt_xdate()
    return figure
