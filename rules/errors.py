"""The one error record every FCC data parser in ``rules/`` returns.

How this works: a parser never raises on a bad row of an operator- or
FCC-supplied file. It skips the row and appends a ``RowError`` naming the
line of the *file* (not the record number: a quoted CSV field may span
lines), the column and what was wrong, so the operator can fix the source
and re-import. ``str(err)`` is the message shown by the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: 1-based file ``line``, ``column`` name and ``message``."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        if self.column:
            return f"line {self.line}, column {self.column!r}: {self.message}"
        return f"line {self.line}: {self.message}"
