"""The package logger and warning class (no global configuration is touched)."""

from __future__ import annotations

import logging

logger = logging.getLogger("scxl")


class ScxlWarning(UserWarning):
    """Warnings emitted by scxl about the data or the options given."""


def warn(message: str, *, stacklevel: int = 3) -> None:
    """Emit a :class:`ScxlWarning` pointing at the user's call."""
    import warnings

    warnings.warn(message, ScxlWarning, stacklevel=stacklevel)


def progress(iterable=None, *, total=None, desc=None, leave=False, **kwargs):
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when ``xl.settings.progress`` is on."""
    from ._settings import settings

    if not settings.progress:
        return _NoBar(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=leave, **kwargs)


class _NoBar:
    """Stand-in for a tqdm bar that does nothing."""

    def __init__(self, iterable=None):
        self._it = iterable

    def __iter__(self):
        return iter(self._it)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass
