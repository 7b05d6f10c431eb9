"""``python -m scxl``: the ``scxl`` command (:func:`scxl.cli.main`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
