"""Hypothesis strategies for what the contracts allow: any feature the JSON API accepts."""

from hypothesis import strategies as st

names = st.text(min_size=1, max_size=20)
feature_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
features = st.dictionaries(names, feature_values, max_size=8)
