"""A replay result three ways: a terminal table, JSON for machines, HTML with plots for people."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import msgspec

from replay import charts
from replay.charts import Interval, figure_html, intervals_figure, legend
from replay.estimators import Estimate
from replay.results import ReplayResult, SlotResult, TargetResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PRIMARY = ("snips", "dr", "ips")  # the estimator a plot shows, first one present


RANKED_NOTE = (
    "per-position estimates weight each position by the target's over the logger's "
    "probability of the rows at and above it (reward-interaction): unbiased when a row's "
    "reward depends on the rows above it, not on those below"
)


def table(result: ReplayResult) -> str:
    lines = [
        f"replay of {result.source}: {result.events:,} events"
        + (f" ({result.duplicates:,} repeats read once)" if result.duplicates else "")
        + (f", {len(result.bad_lines):,} bad lines skipped" if result.bad_lines else "")
    ]
    for slot in result.slots:
        lines += ["", _slot_header(slot)]
        lines.append(
            f"  {'target':<34} {'pos':>3} {'estimator':<12} {'value':>8}  "
            f"{'normal interval':<19} {'bootstrap interval':<19} {'ESS':>9}"
        )
        for target in slot.targets:
            position = "" if target.position is None else str(target.position)
            for e in target.estimates:
                boot = _interval(e.bootstrap) if e.bootstrap else ""
                lines.append(
                    f"  {_cut(target.target, 34):<34} {position:>3} {e.estimator:<12} "
                    f"{e.value:>8.4f}  {_interval(e.normal):<19} {boot:<19} "
                    f"{target.effective_sample_size:>9,.0f}"
                )
            if target.rejection is not None:
                r = target.rejection
                lines.append(
                    f"  {'':<34} {position:>3} {'rejection':<12} {r.value:>8.4f}  "
                    f"{_interval(r.normal):<19} {f'({r.rounds:,} rounds kept)':<19}"
                )
        if slot.flagged_exposure:
            shares = ", ".join(
                f"{name} {share:.1%}" for name, share in slot.flagged_exposure.items()
            )
            lines.append(
                "  exposure of candidates flagged for the floor (their share of each policy's "
                f"probability per decision): {shares}"
            )
        lines += _page_lines(slot)
        lines += _calibration_lines(slot)
        lines += [f"  ! {w}" for w in slot.warnings]
        for target in slot.targets:
            lines += [f"  ! {target.target}: {w}" for w in target.warnings]
    lines += [f"! {w}" for w in result.warnings]
    return "\n".join(lines)


def _page_lines(slot: SlotResult) -> list[str]:
    """A ranked slot's page values: what the whole page earns under each target."""
    if not slot.pages:
        return []
    lines = [
        "  page value (the sum over positions; intervals clustered by page):",
        f"  {'target':<34} {'':>3} {'estimator':<15} {'value':>8}  {'normal interval':<19} "
        f"{'bootstrap interval':<19} assumes",
    ]
    for page in slot.pages:
        for e in page.estimates:
            boot = _interval(e.bootstrap) if e.bootstrap else ""
            lines.append(
                f"  {_cut(page.target, 34):<34} {'':>3} {e.estimator:<20} {e.value:>8.4f}  "
                f"{_interval(e.normal):<19} {boot:<19} {page.assumptions[e.estimator]}"
            )
        lines.append(
            f"  {'':<34} {'':>3} slate IPS rests on {page.standard_effective_pages:,.0f} "
            f"effective pages; its page weights average {page.mean_page_weight:.3f} (1 when "
            "the log sees the target's whole ranking)"
        )
    return lines


def _calibration_lines(slot: SlotResult) -> list[str]:
    """Each estimator's value of the default policy against control, which runs it."""
    if not slot.calibration:
        return []
    lines = ["  calibration: the default policy estimated from treatment vs control:"]
    lines += [f"  {'':<34} {'':>3} {gap.describe()}" for gap in slot.calibration]
    return lines


def to_json(result: ReplayResult) -> bytes:
    """Everything but the weight samples kept for plotting."""
    data = msgspec.to_builtins(result)
    for slot in data["slots"]:
        for target in slot["targets"]:
            target.pop("weight_sample")
    return msgspec.json.format(msgspec.json.encode(data), indent=2) + b"\n"


def to_html(result: ReplayResult) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>artbandit replay</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
        "{text-align:left}.warn{color:#a33}.header{white-space:pre-line}</style></head><body>",
        f"<h1>Replay of {html.escape(result.source)}</h1>",
        f"<p>{result.events:,} events, {result.duplicates:,} repeated decision ids read once."
        f" Confidence {result.settings.confidence:.0%}, {result.settings.bootstrap} bootstrap "
        f"replicates, seed {result.settings.seed}.</p>",
    ]
    parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in result.warnings]
    for slot in result.slots:
        parts.append(
            f"<h2>Slot {html.escape(slot.slot)}</h2>"
            f"<p class='header'>{html.escape(_slot_header(slot))}</p>"
        )
        parts.append(_html_table(slot))
        parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in slot.warnings]
        for target in slot.targets:
            parts += [
                f"<p class='warn'>{html.escape(target.target)}: {html.escape(w)}</p>"
                for w in target.warnings
            ]
        parts.append(figure_html(_estimates_figure(slot), "estimates with intervals"))
        if slot.pages:
            parts.append(figure_html(_pages_figure(slot), "page values"))
        if slot.calibration:
            parts.append(figure_html(_calibration_figure(slot), "calibration"))
        parts.append(figure_html(_weights_figure(slot), "importance weights"))
        parts.append(figure_html(_curve_figure(slot), "estimate as the log is read"))
        if any(t.segments for t in slot.targets):
            parts.append(figure_html(_segments_figure(slot, result.settings.segment), "segments"))
    parts.append("</body></html>")
    return "\n".join(parts)


def _slot_header(slot: SlotResult) -> str:
    ranked = bool(slot.logging_by_position)
    values = ", ".join(
        f"{group} {e.value:.4f} {_interval(e.normal)} over {e.rounds:,} "
        + ("pages" if ranked else "rounds")
        for group, e in slot.logging_value.items()
    )
    trained = f", the first {slot.train_events:,} trained the targets" if slot.train_events else ""
    header = (
        f"slot {slot.slot}: {slot.events:,} events, {slot.evaluated_rounds:,} treatment rounds "
        f"evaluated{trained}, {slot.control_events:,} control events. "
        f"Logged (on-policy) reward{' per page' if ranked else ''}: {values}"
    )
    if not ranked:
        return header
    for group, estimates in slot.logging_by_position.items():
        header += f"\n  logged {group} per position: " + ", ".join(
            f"@{position} {e.value:.4f}" for position, e in enumerate(estimates)
        )
    return header + "\n  " + RANKED_NOTE


def _interval(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:.4f}, {bounds[1]:.4f}]"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _label(target: TargetResult) -> str:
    return target.target + ("" if target.position is None else f" @{target.position}")


def _primary(target: TargetResult) -> Estimate:
    by_name = {e.estimator: e for e in target.estimates}
    return next((by_name[name] for name in PRIMARY if name in by_name), target.estimates[0])


def _html_table(slot: SlotResult) -> str:
    rows = [
        "<table><tr><th>target</th><th>estimator</th><th>value</th><th>normal</th>"
        "<th>bootstrap</th><th>ESS</th><th>max weight</th></tr>"
    ]
    for target in slot.targets:
        for e in target.estimates:
            rows.append(_html_row(_label(target), e, target.effective_sample_size,
                                  f"{target.weights['max']:.1f}"))  # fmt: skip
    for page in slot.pages:
        for e in page.estimates:
            rows.append(_html_row(f"{page.target} · page", e, page.standard_effective_pages, ""))
    rows.append("</table>")
    return "\n".join(rows)


def _html_row(label: str, e: Estimate, ess: float, max_weight: str) -> str:
    boot = _interval(e.bootstrap) if e.bootstrap else ""
    return (
        f"<tr><td>{html.escape(label)}</td><td>{e.estimator}</td><td>{e.value:.4f}</td>"
        f"<td>{_interval(e.normal)}</td><td>{boot}</td><td>{ess:,.0f}</td>"
        f"<td>{max_weight}</td></tr>"
    )


def _estimates_figure(slot: SlotResult) -> Figure:
    rows = []
    crowded = sum(len(t.estimates) for t in slot.targets) > 40  # a search: one per target
    for target in slot.targets:
        for e in [_primary(target)] if crowded else target.estimates:
            ess = f"ESS {target.effective_sample_size:,.0f}"
            rows.append(Interval(f"{_cut(_label(target), 80)} · {e.estimator} ({ess})",
                                 e.value, *e.normal))  # fmt: skip
    # rows' logged values are per page, their estimates per position: no common axis
    logged = {} if slot.logging_by_position else slot.logging_value
    references = {
        f"logged {group} (on-policy)": (e.value, _colour(group)) for group, e in logged.items()
    }
    return intervals_figure(rows, f"{slot.slot}: estimates with intervals",
                            "estimated reward per round", references)  # fmt: skip


def _colour(group: str) -> str:
    return charts.GREY if group == "control" else charts.ORANGE


def _pages_figure(slot: SlotResult) -> Figure:
    """A ranked slot's page values, next to what each group's pages earned."""
    rows = [
        Interval(f"{_cut(page.target, 60)} · {e.estimator}", e.value, *e.normal)
        for page in slot.pages
        for e in page.estimates
    ]
    references = {
        f"logged {group} per page": (e.value, _colour(group))
        for group, e in slot.logging_value.items()
    }
    return intervals_figure(rows, f"{slot.slot}: page value (sum over positions)",
                            "estimated reward per page", references)  # fmt: skip


def _calibration_figure(slot: SlotResult) -> Figure:
    """Each estimator's gap to control with the always-valid interval its verdict reads:
    green agrees, red disagrees, grey not judged."""
    rows = []
    for gap in slot.calibration:
        colour = charts.RED if gap.flagged else charts.GREEN if gap.judged else charts.GREY
        rows.append(Interval(f"{gap.estimator}: {gap.verdict().split(':')[0]}", gap.value,
                             gap.sequence.low, gap.sequence.high, colour))  # fmt: skip
    return intervals_figure(
        rows, f"{slot.slot}: calibration, default policy off-policy minus control "
        f"({slot.calibration[0].scope})", "gap (always-valid interval)",
        {"no gap": (0.0, charts.GREY)},
    )  # fmt: skip


def _weights_figure(slot: SlotResult) -> Figure:
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(figsize=(9, 3.5))
    for target in slot.targets:
        weights = np.asarray(target.weight_sample)
        positive = weights[weights > 0]
        if len(positive):
            bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()) + 1e-9, 40)
            axes.hist(positive, bins=list(bins), histtype="step", label=_cut(_label(target), 40))
    axes.set_xscale("log")
    axes.set_xlabel("importance weight pi / mu (rounds with weight 0 not shown)")
    axes.set_ylabel("rounds")
    legend(axes)
    axes.set_title(f"{slot.slot}: importance weights")
    return figure


def _curve_figure(slot: SlotResult) -> Figure:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3.5))
    for target in slot.targets:
        if target.curve:
            x, y = zip(*target.curve, strict=True)
            axes.plot(x, y, label=_cut(_label(target), 40))
    axes.set_xlabel("rounds read (time order)")
    axes.set_ylabel("SNIPS so far")
    legend(axes)
    axes.set_title(f"{slot.slot}: estimates as the log is read (learning targets learn as they go)")
    return figure


def _segments_figure(slot: SlotResult, feature: str | None) -> Figure:
    """Each segment's estimate per target, with its interval, segment by segment."""
    targets = [t for t in slot.targets if t.segments]
    segments = sorted({s for t in targets for s in t.segments})
    colours = [charts.BLUE, charts.ORANGE, charts.GREEN, charts.RED, charts.GREY]
    rows = []
    for segment in segments:
        for k, target in enumerate(targets):
            by_name = {e.estimator: e for e in target.segments.get(segment) or []}
            chosen = next((by_name[n] for n in PRIMARY if n in by_name), None)
            if chosen is not None:
                rows.append(Interval(
                    f"{_cut(segment, 30)} · {_cut(_label(target), 40)} · {chosen.estimator}",
                    chosen.value, *chosen.normal, colours[k % len(colours)],
                ))  # fmt: skip
    return intervals_figure(rows, f"{slot.slot}: by {feature}", "estimated reward per round")
