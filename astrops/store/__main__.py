"""``python -m astrops.store ...``: launches the store's command line, which lives in
:mod:`astrops.entry.store`."""

import sys

from astrops.entry.store import cli

if __name__ == "__main__":
    sys.exit(cli())
