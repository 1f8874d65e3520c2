"""Pure helpers of the store: notify-keyspace-events flags and date forms."""

from __future__ import annotations

from proxy.store.feed import needed_notify_flags
from proxy.store.keys import parse_date


def test_notify_flags_only_added() -> None:
    assert needed_notify_flags("") == "Kgs$hzxet"
    assert needed_notify_flags("Ex") == "ExKgs$hzet"
    assert needed_notify_flags("KA") == "KA"


def test_parse_date_forms() -> None:
    assert parse_date("2021-10-21") == 1634774400.0
    assert parse_date("2021-10-21T12:00:00Z") == 1634774400.0 + 43200
    assert parse_date("1634774400") == 1634774400.0
    assert parse_date("21/10/2021") is None
