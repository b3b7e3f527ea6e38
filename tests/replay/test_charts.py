"""The reports' interval charts: an interval the log can hardly support (a tiny effective
sample) is clipped at the axis, never allowed to squeeze every other interval into a dot."""

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from replay.charts import WIDE, Interval, intervals_figure, limits

finite = st.floats(-100, 100, allow_nan=False)


@st.composite
def rows(draw):
    out = []
    for _ in range(draw(st.integers(1, 12))):
        value = draw(finite)
        below, above = draw(st.floats(0, 50)), draw(st.floats(0, 50))
        out.append(Interval("r", value, value - below, value + above))
    return out


@given(rows(), st.lists(finite, max_size=3))
def test_ordinary_rows_and_references_fit_the_axis(drawn, references):
    low, high = limits(drawn, references)
    assert low < high
    typical = statistics.median(r.high - r.low for r in drawn)
    for row in drawn:
        if typical == 0 or row.high - row.low <= WIDE * typical:
            assert low <= row.low and row.high <= high
    assert all(low <= r <= high for r in references)


def test_a_tiny_effective_sample_is_clipped_not_allowed_to_rescale_the_axis():
    ordinary = [
        Interval(f"t{i}", 0.2 + 0.01 * i, 0.15 + 0.01 * i, 0.25 + 0.01 * i) for i in range(6)
    ]
    wild = Interval("ESS 2", 6.27, -5.3, 17.8)
    low, high = limits([*ordinary, wild])
    assert limits(ordinary) == (low, high)
    assert high - low < 0.5  # the rows axis went to -2.5 with the wild row counted

    figure = intervals_figure([*ordinary, wild], "t", "reward", {"logged": (0.2, "#888")})
    axes = figure.axes[0]
    assert axes.get_xlim() == (low, high)
    markers = [line for line in axes.get_lines() if line.get_marker() in ("<", ">")]
    assert len(markers) == 2  # the wild row's interval runs past both edges
    assert "runs past the axis" in axes.get_xlabel()
    assert any(t.get_text() == "6.27" for t in axes.texts)  # its value, off the axis


def test_nothing_but_wild_rows_still_shows_their_values():
    low, high = limits([Interval("a", 1.0, -math.inf, math.inf)])
    assert low < 1.0 < high
