"""What the simulator prints: a live line while traffic runs, and the final summary."""

from __future__ import annotations

import time
from typing import TextIO

import numpy as np

from bandit.contracts.events import GROUPS
from bandit.measurement.stats import Lift, Rate, lift
from sim.tally import Tally, columns, rate


class Printer:
    """Lines for everyone; the live line is redrawn in place on a terminal, printed every
    `every_s` seconds otherwise, and never with `quiet`."""

    def __init__(self, stream: TextIO, quiet: bool = False, every_s: float = 10.0):
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.every_s = every_s
        self._last = 0.0
        self._drawn = False

    def line(self, text: str) -> None:
        if not self.quiet:
            self.end_live()
            self.stream.write(text + "\n")
            self.stream.flush()

    def live(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write(f"\r{text}\033[K")
            self._drawn = True
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self.stream.write(text + "\n")
        self.stream.flush()

    def end_live(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def group_rates(tally: Tally, since_s: float = 0.0) -> dict[str, dict[str, Rate]]:
    """group -> {clicks, plays, expected, oracle} per impression, over pages after `since_s`."""
    data = columns(tally.records())
    out: dict[str, dict[str, Rate]] = {}
    if not len(data["at"]):
        return out
    recent = data["at"] >= since_s
    for group in GROUPS:
        mask = recent & (data["group"] == group)
        out[group] = {what: rate(data, what, mask) for what in ("clicks", "plays", "expected")}
    out["all"] = {"oracle": rate(data, "oracle", recent)}
    return out


def live_line(tally: Tally, elapsed_s: float, duration_s: float, learned: float) -> str:
    records = tally.records()
    impressions = sum(r.impressions for r in records)
    rates = group_rates(tally, since_s=max(0.0, elapsed_s - 30.0))  # the last 30 s
    versions = "/".join(_short(tally.versions.get(s, "-")) for s in ("artwork", "hero", "rows"))
    text = (
        f"[{elapsed_s:4.0f}/{duration_s:.0f} s] pages {len(records):,}  impressions {impressions:,}"
    )
    if rates:
        t, c = rates["treatment"]["clicks"].value, rates["control"]["clicks"].value
        text += f"  CTR(30 s) treatment {_pct(t)} control {_pct(c)}"
        text += f" oracle {_pct(rates['all']['oracle'].value)}"
    return text + f"  policy {versions}  learned {learned:,.0f}"


def _short(version: str) -> str:
    """v00000023 -> v23."""
    digits = version.removeprefix("v")
    return f"v{int(digits)}" if digits.isdigit() else version


def _pct(value: float) -> str:
    return "  -  " if not np.isfinite(value) else f"{value:.1%}"


def _interval(r: Rate) -> str:
    if not np.isfinite(r.low):
        return f"{_pct(r.value):>6}"
    return f"{r.value:>6.1%} [{r.low:.1%}, {r.high:.1%}]"


def _lift(x: Lift) -> str:
    if not np.isfinite(x.value):
        return "  -"
    if not np.isfinite(x.low):
        return f"{x.value:+.1%}"
    p = "p < 0.001" if x.p_value < 0.001 else f"p = {x.p_value:.3f}"
    watched = x.sequence
    return (
        f"{x.value:+.1%} [{x.low:+.1%}, {x.high:+.1%}] one look, {p}; always-valid "
        f"[{watched.low:+.1%}, {watched.high:+.1%}]"
    )


def _guardrail(clicks: Lift, plays: Lift) -> str:
    """The guardrail's verdict, by the always-valid sequences (as the learner's alert)."""
    clicks_seen, plays_seen = clicks.sequence, plays.sequence
    if clicks_seen.low > 0 and plays_seen.high < 0:
        return (
            "PLAYS FALL while CTR rises: people click what they do not play (click-bait); "
            "weigh plays more in the reward"
        )
    if plays_seen.low > 0 or not plays_seen.high < 0:
        return "plays do not fall significantly: the CTR gain is not bought with plays"
    return "plays fall significantly"


def final_summary(tally: Tally, elapsed_s: float) -> str:
    """Treatment and control with 95% intervals (pages are the unit), the lift, the oracle."""
    records = tally.records()
    impressions = sum(r.impressions for r in records)
    rates = group_rates(tally)
    lines = [f"{elapsed_s:.0f} s of traffic: {len(records):,} pages, {impressions:,} impressions"]
    if not rates:
        return lines[0] + " (no pages served)"
    lines.append(f"{'':<11}{'pages':>7}  {'CTR (95% CI)':<25}{'play rate (95% CI)':<25}")
    for group in GROUPS:
        clicks, plays = rates[group]["clicks"], rates[group]["plays"]
        lines.append(
            f"{group:<11}{clicks.units:>7,}  {_interval(clicks):<25}{_interval(plays):<25}"
        )
    t, c = rates["treatment"], rates["control"]
    click_lift, play_lift = lift(t["clicks"], c["clicks"]), lift(t["plays"], c["plays"])
    lines.append(f"{'lift':<11}{'':>7}  CTR {_lift(click_lift)}; plays {_lift(play_lift)}")
    lines.append(f"{'guardrail':<11}{'':>7}  {_guardrail(click_lift, play_lift)}")
    recent = group_rates(tally, since_s=elapsed_s * 2 / 3)
    if recent:
        rt, rc = recent["treatment"]["clicks"], recent["control"]["clicks"]
        lines.append(
            f"{'last third':<11}{'':>7}  CTR treatment {_pct(rt.value)}, control "
            f"{_pct(rc.value)}: lift {_lift(lift(rt, rc))}"
        )
    oracle = rates["all"]["oracle"].value
    lines.append(
        f"{'oracle':<11}{'':>7}  {_pct(oracle)} expected CTR of the best page for each request "
        f"(it knows the hidden tastes)"
    )
    lines.append(f"{'':<20}expected CTR as a share of it: {_shares(rates)} over the whole run")
    if recent:
        lines.append(f"{'':<20}{_shares(recent)} over the last third ({elapsed_s / 3:.0f} s)")
    below = windows_below(tally, elapsed_s)
    spans = ", ".join(f"{a:.0f}-{b:.0f} s" for a, b in below) or "none"
    lines.append(
        f"{'30 s windows':<20}where treatment's CTR interval lies below control's: {spans}"
    )
    return "\n".join(line.rstrip() for line in lines)


def windows_below(
    tally: Tally, elapsed_s: float, window_s: float = 30.0, step_s: float = 5.0
) -> list[tuple[float, float]]:
    """The `window_s` windows (starting every `step_s`) in which treatment's CTR interval
    lies wholly below control's: where the optimizer visibly did worse than doing nothing."""
    data = columns(tally.records())
    below = []
    for start in np.arange(0.0, max(elapsed_s - window_s, 0.0) + 1e-9, step_s):
        inside = (data["at"] >= start) & (data["at"] < start + window_s)
        t = rate(data, "clicks", inside & (data["group"] == "treatment"))
        c = rate(data, "clicks", inside & (data["group"] == "control"))
        if t.high < c.low:
            below.append((float(start), float(start + window_s)))
    return below


def _shares(rates: dict[str, dict[str, Rate]]) -> str:
    oracle = rates["all"]["oracle"].value
    return ", ".join(f"{group} {rates[group]['expected'].value / oracle:.0%}" for group in GROUPS)
