"""``python -m dicomdesk``: the same entry point as the ``dicomdesk`` console script."""

from __future__ import annotations

import sys

from dicomdesk.cli import main

if __name__ == "__main__":
    sys.exit(main())
