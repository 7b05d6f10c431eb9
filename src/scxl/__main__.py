"""``python -m scxl``: the ``scxl`` command (:func:`scxl.cli.console`)."""

from .cli import console

if __name__ == "__main__":
    console()
