"""Torch devices: ``device="auto"`` and friends (no AnnData here, so kernels can use it)."""

from __future__ import annotations

from typing import Any


def resolve_device(device: Any = None):
    """Return a ``torch.device``; ``"auto"`` picks CUDA when available, ``None`` reads ``xl.settings.device``.

    Parameters
    ----------
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, a ``torch.device`` or ``None``.

    Returns
    -------
    The ``torch.device``.

    Raises
    ------
    RuntimeError
        If CUDA or MPS is requested but not available.
    """
    import torch

    from ._settings import settings

    device = settings.device if device is None else device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) and not isinstance(device, torch.device):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but CUDA is not available; use device='cpu' or 'auto'")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise RuntimeError("device='mps' was requested but MPS is not available; use device='cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return dev
