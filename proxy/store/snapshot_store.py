"""`SnapshotStore`: the one object the proxy and the CLI use (see the package
docstring for how it works)."""

from __future__ import annotations

from proxy.store.session import Session
from proxy.store.writers import Writers


class SnapshotStore(Session, Writers):
    """Keeps `self.snapshot` equal to what Redis holds under `prefix`."""
