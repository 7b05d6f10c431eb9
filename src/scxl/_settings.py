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
        Level of the ``"scxl"`` logger: ``"warning"``, ``"info"`` or ``"debug"``.

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
        self._verbosity = "warning"

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

        levels = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
        if value not in levels:
            raise ValueError(f"verbosity must be one of {list(levels)}, got {value!r}")
        self._verbosity = value
        logging.getLogger("scxl").setLevel(levels[value])

    def __repr__(self) -> str:
        return (
            f"ScxlSettings(datasetdir={str(self.datasetdir)!r}, progress={self.progress}, "
            f"device={self.device!r}, verbosity={self.verbosity!r})"
        )


settings = ScxlSettings()
