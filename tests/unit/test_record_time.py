"""The decision records' timestamp (proxy/screen.py ``_iso_ms``) against datetime."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.screen import _iso_ms, _iso_ms_reference


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.floats(0, 4e9, allow_nan=False),
        # whole seconds plus the fractions where rounding carries or ties
        st.tuples(
            st.integers(0, 4_000_000_000),
            st.sampled_from([0.0, 0.0005, 0.0009995, 0.999, 0.9995, 0.9999995, 0.99999995]),
        ).map(sum),
    )
)
def test_record_timestamp_is_the_datetime_reading(ts: float) -> None:
    """The records' ``ts`` (formatted once per second, proxy/screen.py ``_iso_ms``)
    is exactly what ``datetime.fromtimestamp(ts, UTC)`` cut to milliseconds gives."""
    assert _iso_ms(ts) == _iso_ms_reference(ts)
