"""The safeguards every data import shares: all-or-nothing and the drop guard.

How this works: an import replaces a whole data set the screening decision
depends on (the RMD snapshot behind the 47 CFR 64.6305(g) gate, the NANPA
codes behind the unallocated-number rule of 47 CFR 64.1200(o)). Two ways a
bad file does harm are checked here, without I/O, before anything is
written:

* ``bad_rows_message``: the parsers of ``rules/`` skip a bad row and report
  it (``RowError``); by default the importer applies nothing when any row is
  bad (the operator fixes the file, or asks for the rest with
  ``--skip-bad-rows``).
* ``drop_guard``: a truncated download looks exactly like a mass removal
  (the RMD export has no "removed" flag, a filer simply disappears; a NANPA
  file cut short drops whole area codes, whose calls the DNO rule would then
  block). An import that would drop more than ``max_share`` of the entries
  in force, or that holds far fewer rows than them, is refused unless the
  operator accepts it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rules.errors import RowError

__all__ = ["DEFAULT_MAX_REMOVED_SHARE", "bad_rows_message", "drop_guard"]

# Share of the entries in force an import may drop without --accept-removals.
DEFAULT_MAX_REMOVED_SHARE = 0.05


def bad_rows_message(path: str, errors: Sequence[RowError]) -> str:
    """The one-line refusal of a file with bad rows (each printed before it)."""
    n = len(errors)
    return (
        f"{path}: {n} bad row{'s' if n != 1 else ''}; nothing imported "
        "(fix the file, or pass --skip-bad-rows to import the other rows)"
    )


def drop_guard(what: str, old: int, new: int, dropped: int, max_share: float) -> str | None:
    """Why an import of ``new`` entries replacing ``old`` is suspicious, or None.

    ``dropped`` counts the entries in force that the new file lacks. The
    import is suspicious when ``dropped`` exceeds ``max_share`` of ``old``, or
    when ``new`` is below ``(1 - max_share)`` of ``old`` (far fewer rows, e.g.
    a file cut short after many bad rows were skipped). The first import
    (``old == 0``) is never refused.
    """
    if old <= 0:
        return None
    share = dropped / old
    if dropped and share > max_share:
        return (
            f"would drop {dropped} of {old} {what} in force ({share:.1%}, more than the "
            f"{max_share:.1%} allowed): a truncated file looks like a mass removal"
        )
    if new < old * (1.0 - max_share):
        return (
            f"has {new} {what} against {old} in force ({1 - new / old:.1%} fewer, more than "
            f"the {max_share:.1%} allowed): is the file complete?"
        )
    return None
