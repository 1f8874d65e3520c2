"""`python -m proxy ...` is `sipscreen ...` (proxy.cli.main)."""

from __future__ import annotations

import sys

from proxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
