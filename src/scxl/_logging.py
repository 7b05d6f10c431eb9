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


def renamed_kwarg(old: str, new: str, *, since: str = "0.2"):
    """Decorator: accept the keyword ``old`` for ``new`` with a :class:`FutureWarning` (a deprecation path)."""
    import functools
    import warnings

    def dec(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{func.__name__}() got both {old}= (deprecated) and {new}=; pass {new}= only")
                warnings.warn(
                    f"{func.__name__}({old}=...) is deprecated since scxl {since}: it is called {new}= now "
                    f"(in scxl, key= always names a ranking or attribution)", FutureWarning, stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper

    return dec
