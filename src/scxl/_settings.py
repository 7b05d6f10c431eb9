"""Global settings: ``xl.settings``."""

from __future__ import annotations

import os
from pathlib import Path

_DEVICES = ("auto", "cpu", "cuda", "mps")


class ScxlSettings:
    """Package-wide settings, available as ``xl.settings``.

    Attributes
    ----------
    datasetdir
        Folder that the :mod:`xl.datasets <scxl.datasets>` loaders read from. Defaults to the
        environment variable ``SCXL_DATASETDIR``, else ``~/.cache/scxl``.
    progress
        Show ``tqdm`` progress bars for long computations.
    device
        Default torch device for training and attribution: ``"auto"`` (CUDA when available),
        ``"cpu"``, ``"cuda"`` or ``"mps"``.
    verbosity
        What the ``"scxl"`` logger prints to stderr: ``"error"``, ``"warning"`` (the default:
        warnings only), ``"info"`` (a start and a finished line per tool, as Scanpy prints) or
        ``"debug"``. The environment variable ``SCXL_VERBOSITY`` sets the initial value. The
        logger has its own handler (the root logger is never configured); its records also
        propagate to the root logger, and a line a root handler already prints to the terminal
        is not printed twice.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> xl.settings.device
    'auto'
    """

    def __init__(self) -> None:
        self._datasetdir = Path(
            os.environ.get("SCXL_DATASETDIR", Path.home() / ".cache" / "scxl")
        ).expanduser()
        self.progress: bool = os.environ.get("SCXL_PROGRESS", "1") not in ("0", "false", "False")
        self._device = "auto"
        try:
            self.verbosity = os.environ.get("SCXL_VERBOSITY", "warning")
        except ValueError as err:  # a bad environment variable must not break `import scxl`
            import warnings

            from ._logging import ScxlWarning

            warnings.warn(f"SCXL_VERBOSITY: {err}; using 'warning'", ScxlWarning, stacklevel=2)
            self.verbosity = "warning"

    @property
    def datasetdir(self) -> Path:
        """Folder read by the dataset loaders."""
        return self._datasetdir

    @datasetdir.setter
    def datasetdir(self, value: str | os.PathLike) -> None:
        self._datasetdir = Path(value).expanduser()

    @property
    def device(self) -> str:
        """Default torch device (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``)."""
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        if not isinstance(value, str) or value.split(":")[0] not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES} (optionally 'cuda:N'), got {value!r}")
        self._device = value

    @property
    def verbosity(self) -> str:
        """Level of the ``"scxl"`` logger."""
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: str) -> None:
        import logging

        from ._logging import install_handler

        levels = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
        if value not in levels:
            raise ValueError(f"verbosity must be one of {list(levels)}, got {value!r}")
        self._verbosity = value
        install_handler()
        logging.getLogger("scxl").setLevel(levels[value])

    def __repr__(self) -> str:
        return (
            f"ScxlSettings(datasetdir={str(self.datasetdir)!r}, progress={self.progress}, "
            f"device={self.device!r}, verbosity={self.verbosity!r})"
        )


settings = ScxlSettings()
