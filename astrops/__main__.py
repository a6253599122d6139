"""``python -m astrops COMMAND ...``: launches :mod:`astrops.entry.cli`."""

import sys

from astrops.entry.cli import main

if __name__ == "__main__":
    sys.exit(main())
