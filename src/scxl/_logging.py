"""The package logger and warning class (no global configuration is touched).

The ``"scxl"`` logger has one handler of its own that prints to stderr (added once, like
Scanpy's); its level is ``xl.settings.verbosity``. Records still propagate to the root logger, so
``caplog`` and the user's own logging configuration see them.
"""

from __future__ import annotations

import contextlib
import logging
import sys

logger = logging.getLogger("scxl")


class _Formatter(logging.Formatter):
    """Scanpy's short format: info lines as they are, other levels prefixed (``WARNING: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return msg if record.levelno == logging.INFO else f"{record.levelname}: {msg}"


class _StderrHandler(logging.Handler):
    """Prints the ``"scxl"`` logger's records to the *current* ``sys.stderr`` (a notebook's, pytest's).

    A record that a handler of the root logger already prints to the terminal (e.g. after the
    user's ``logging.basicConfig()``) is not printed a second time.
    """

    _scxl_handler = True

    def emit(self, record: logging.LogRecord) -> None:
        if _root_prints(record):
            return
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging must never raise
            self.handleError(record)


def _root_prints(record: logging.LogRecord) -> bool:
    terminals = {id(s) for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__) if s is not None}
    return any(type(h) is logging.StreamHandler and id(getattr(h, "stream", None)) in terminals and record.levelno >= h.level
               for h in logging.getLogger().handlers)


def install_handler() -> None:
    """Give the ``"scxl"`` logger its stderr handler (once; never touches the root logger)."""
    if not any(getattr(h, "_scxl_handler", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)


class ScxlWarning(UserWarning):
    """Warnings emitted by scxl about the data or the options given (``xl.ScxlWarning``).

    Every warning scxl itself emits has this class, so it can be filtered or turned into an
    error without touching other libraries' warnings; the one exception is a deprecated name or
    keyword, which warns with :class:`FutureWarning` as Python and scverse packages do.

    Examples
    --------
    >>> import warnings
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(200, 50, 2)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", xl.ScxlWarning)  # make scxl's own warnings errors
    ...     xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=2)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=2, min_delta=0.5, overwrite=True)
    >>> [type(w.message).__name__ for w in caught]
    ['ScxlWarning']
    """


class DataScaleWarning(ScxlWarning):
    """The values look like another scale than expected (``xl.DataScaleWarning``, a :class:`ScxlWarning`).

    Raw or linear counts, scaled (negative) values, whole numbers that may be shallow counts
    (e.g. scATAC fragments), or a query on another scale than the training data. Silence it
    alone when the scale is deliberate, keeping scxl's other warnings.

    Examples
    --------
    >>> import warnings
    >>> import scxl as xl
    >>> warnings.filterwarnings("ignore", category=xl.DataScaleWarning)  # e.g. binarised peaks on purpose
    >>> issubclass(xl.DataScaleWarning, xl.ScxlWarning)
    True
    >>> warnings.resetwarnings()
    """


class deferred_interrupt:  # (lower case: a context manager, as contextlib's)
    """Hold a Ctrl-C (SIGINT) until the block has finished, then raise it: for the writes of a result.

    A ``KeyboardInterrupt`` in the middle of storing a result would leave it half written (a
    layer without its ranking, a view half turned into an AnnData). In the main thread, with
    Python's own SIGINT handler in place, the signal is recorded instead and raised as a
    ``KeyboardInterrupt`` naming ``what`` once the block is done (with ``reraise=False`` it is only
    recorded, in :attr:`received`, for the caller to act on); elsewhere the block runs as it is.

    Examples
    --------
    >>> from scxl._logging import deferred_interrupt
    >>> with deferred_interrupt("the result"):
    ...     stored = True
    >>> stored
    True
    """

    def __init__(self, what: str, *, reraise: bool = True) -> None:
        self.what, self.reraise, self.received, self.previous = what, reraise, [], None

    def __enter__(self) -> deferred_interrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, lambda signum, frame: self.received.append(signum))
        return self

    @contextlib.contextmanager
    def released(self):
        """Let a Ctrl-C through inside this block, for a long step whose interruption the caller handles.

        One that was held before the block is raised at its start (and no longer counted in
        :attr:`received`); outside the block Ctrl-C is held again.
        """
        import signal

        if self.previous is None:  # (not holding: another thread, or another handler in place)
            yield
            return
        if self.received:
            self.received.clear()
            raise KeyboardInterrupt
        holding = signal.signal(signal.SIGINT, self.previous)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, holding)

    def __exit__(self, kind, value, tb) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.received and kind is None and self.reraise:
            raise KeyboardInterrupt(f"interrupted while storing {self.what}: it was stored first")


def warn(message: str, *, stacklevel: int = 3, category: type[ScxlWarning] | None = None) -> None:
    """Emit a :class:`ScxlWarning` (or the subclass ``category``) pointing at the user's call."""
    import warnings

    warnings.warn(message, category or ScxlWarning, stacklevel=stacklevel)


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
