"""The :class:`Ensemble`: trained members plus everything needed to use them elsewhere.

An ensemble is stored as plain arrays and metadata — in ``adata.uns[key]`` or in a standalone
``.npz`` file — and never pickled: loading a file someone sent you never executes code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._modules import build_module

FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("scxl", "torch", "anndata", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            out[pkg] = "unknown"
    return out


class Ensemble:
    """An ensemble of trained classifiers with the metadata to apply it to new data.

    Parameters
    ----------
    modules
        The trained members (``torch.nn.Module``), all mapping ``(n, n_features)`` → logits.
    classes
        Class names, in logit order.
    var_names
        Feature names, in model input order.
    spec
        JSON-able architecture spec (see :func:`scxl.models.default_spec`).
    orders
        CNN gene orders, shape ``(n_models, n_features)``; ``None`` for MLPs.
    params
        Training parameters (JSON-able).
    preprocessing
        Where the input came from (``layer``, ``use_raw``, modalities) and its units.
    history, metrics, recall
        Training history (long format), per-member and ensemble validation metrics, and
        per-class recall, as DataFrames.
    confusion
        Ensemble confusion matrix on the validation cells (rows true, columns predicted).
    extra
        Further JSON-able or array results (e.g. cross-validation).

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.synthetic(200, 100, 3, random_state=0)
    >>> xl.settings.progress = False
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=3)
    >>> ens = xl.get.ensemble(adata)
    >>> ens.predict_proba(adata.X).shape
    (200, 3)
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        *,
        classes: Sequence[str],
        var_names: Sequence[str],
        spec: dict[str, Any],
        orders: np.ndarray | None = None,
        params: dict[str, Any] | None = None,
        preprocessing: dict[str, Any] | None = None,
        history: pd.DataFrame | None = None,
        metrics: pd.DataFrame | None = None,
        recall: pd.DataFrame | None = None,
        confusion: np.ndarray | None = None,
        extra: dict[str, Any] | None = None,
        versions: dict[str, str] | None = None,
    ) -> None:
        self.modules = list(modules)
        for m in self.modules:
            m.eval()
        self.classes = np.asarray(classes, dtype=str)
        self.var_names = pd.Index(np.asarray(var_names, dtype=str))
        self.spec = dict(spec)
        self.orders = None if orders is None else np.asarray(orders, dtype=np.int64)
        self.params = dict(params or {})
        self.preprocessing = dict(preprocessing or {})
        self.history = history
        self.metrics = metrics
        self.recall = recall
        self.confusion = confusion
        self.extra = dict(extra or {})
        self.versions = dict(versions or _versions())

    # ------------------------------------------------------------------ basics
    @property
    def n_models(self) -> int:
        """Number of members."""
        return len(self.modules)

    @property
    def model_type(self) -> str:
        """``"mlp"``, ``"cnn"`` or ``"custom"``."""
        return str(self.spec["type"])

    def __len__(self) -> int:
        return self.n_models

    def __repr__(self) -> str:
        return (
            f"Ensemble of {self.n_models} {self.model_type.upper()} models: "
            f"{len(self.var_names)} features → {len(self.classes)} classes "
            f"({', '.join(self.classes[:6])}{', …' if len(self.classes) > 6 else ''})"
        )

    def to(self, device: str | torch.device) -> Ensemble:
        """Move every member to ``device`` (in place); returns ``self``."""
        for m in self.modules:
            m.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """Device of the members' parameters."""
        return next(self.modules[0].parameters()).device

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_proba(
        self,
        X: Any,
        *,
        members: Sequence[int] | None = None,
        return_members: bool = False,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Class probabilities, averaged over members (soft voting).

        Parameters
        ----------
        X
            ``(n, n_features)`` array (dense or sparse) with columns in :attr:`var_names` order.
        members
            Indices of the members to use (default: all).
        return_members
            Return the per-member probabilities, shape ``(n_members, n, n_classes)``.
        batch_size
            Rows per forward pass.

        Returns
        -------
        ``(n, n_classes)`` float32 probabilities (or per member, see ``return_members``).
        """
        from scipy import sparse

        if X.shape[1] != len(self.var_names):
            raise ValueError(f"X has {X.shape[1]} columns but the ensemble expects {len(self.var_names)} features")
        mods = self.modules if members is None else [self.modules[i] for i in members]
        device = self.device
        out = np.empty((len(mods), X.shape[0], len(self.classes)), dtype=np.float32)
        for start in range(0, X.shape[0], batch_size):
            block = X[start : start + batch_size]
            block = block.toarray() if sparse.issparse(block) else np.asarray(block)
            xb = torch.as_tensor(np.ascontiguousarray(block, dtype=np.float32), device=device)
            for i, m in enumerate(mods):
                m.eval()
                out[i, start : start + xb.shape[0]] = torch.softmax(m(xb), dim=1).cpu().numpy()
        return out if return_members else out.mean(axis=0)

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        """Predicted class names (argmax of :meth:`predict_proba`)."""
        return self.classes[self.predict_proba(X, **kwargs).argmax(axis=1)]

    # ---------------------------------------------------------- serialisation
    def _metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "spec": self.spec,
            "params": self.params,
            "preprocessing": self.preprocessing,
            "versions": self.versions,
            "n_models": self.n_models,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain arrays, DataFrames and scalars for ``adata.uns`` (no pickles)."""
        weights = {
            f"model_{i}": {k: v.detach().cpu().numpy() for k, v in m.state_dict().items()}
            for i, m in enumerate(self.modules)
        }
        meta = self._metadata()
        d: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "spec": _jsonable(meta["spec"]),
            "params": _jsonable(self.params),
            "preprocessing": _jsonable(self.preprocessing),
            "versions": dict(self.versions),
            "classes": self.classes.astype(object),
            "var_names": self.var_names.to_numpy().astype(object),
            "weights": weights,
        }
        if self.orders is not None:
            d["orders"] = self.orders
        for name in ("history", "metrics", "recall"):
            df = getattr(self, name)
            if df is not None:
                d[name] = df
        if self.confusion is not None:
            d["confusion"] = np.asarray(self.confusion)
        if self.extra:
            d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, factory: Callable[[int, int], nn.Module] | None = None) -> Ensemble:
        """Rebuild an ensemble from :meth:`to_dict` output (e.g. ``adata.uns["xl"]``)."""
        missing = [k for k in ("spec", "classes", "var_names", "weights") if k not in d]
        if missing:
            raise ValueError(f"not an scxl ensemble: missing {missing}")
        spec = _from_stored(d["spec"])
        orders = None if d.get("orders") is None else np.asarray(d["orders"])
        weights = d["weights"]
        keys = sorted(weights, key=lambda k: int(str(k).rsplit("_", 1)[-1]))
        modules = []
        for i, k in enumerate(keys):
            m = build_module(spec, order=None if orders is None else orders[i], factory=factory)
            state = {name: torch.as_tensor(np.asarray(arr)) for name, arr in weights[k].items()}
            m.load_state_dict(state)
            m.eval()
            modules.append(m)
        return cls(
            modules,
            classes=[str(c) for c in np.asarray(d["classes"])],
            var_names=[str(v) for v in np.asarray(d["var_names"])],
            spec=spec,
            orders=orders,
            params=_from_stored(d.get("params", {})),
            preprocessing=_from_stored(d.get("preprocessing", {})),
            history=d.get("history"),
            metrics=d.get("metrics"),
            recall=d.get("recall"),
            confusion=d.get("confusion"),
            extra=d.get("extra"),
            versions={k: str(v) for k, v in dict(d.get("versions", {})).items()},
        )

    def save(self, path: str | Path) -> Path:
        """Write the ensemble to a standalone ``.npz`` file (arrays + JSON metadata, no pickle).

        Parameters
        ----------
        path
            Target file; ``.npz`` is appended if missing.

        Returns
        -------
        The path written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        arrays: dict[str, np.ndarray] = {}
        for i, m in enumerate(self.modules):
            for k, v in m.state_dict().items():
                arrays[f"weights/model_{i}/{k}"] = v.detach().cpu().numpy()
        if self.orders is not None:
            arrays["orders"] = self.orders
        if self.confusion is not None:
            arrays["confusion"] = np.asarray(self.confusion)
        meta = self._metadata() | {
            "classes": self.classes.tolist(),
            "var_names": self.var_names.tolist(),
            "tables": {
                n: getattr(self, n).to_json(orient="split")
                for n in ("history", "metrics", "recall")
                if getattr(self, n) is not None
            },
        }
        arrays["__metadata__"] = np.frombuffer(json.dumps(_jsonable(meta)).encode(), dtype=np.uint8)
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path, *, factory: Callable[[int, int], nn.Module] | None = None) -> Ensemble:
        """Load an ensemble written by :meth:`save` (``allow_pickle=False``: no code is run).

        Parameters
        ----------
        path
            The ``.npz`` file.
        factory
            The module factory, for ensembles trained with a custom model.

        Returns
        -------
        The ensemble, on the CPU.
        """
        from io import StringIO

        with np.load(Path(path), allow_pickle=False) as z:
            if "__metadata__" not in z.files:
                raise ValueError(f"{path} is not an scxl ensemble file (no metadata)")
            meta = json.loads(z["__metadata__"].tobytes().decode())
            weights: dict[str, dict[str, np.ndarray]] = {}
            for name in z.files:
                if name.startswith("weights/"):
                    _, member, param = name.split("/", 2)
                    weights.setdefault(member, {})[param] = z[name]
            d = {
                "spec": meta["spec"],
                "params": meta.get("params", {}),
                "preprocessing": meta.get("preprocessing", {}),
                "versions": meta.get("versions", {}),
                "classes": meta["classes"],
                "var_names": meta["var_names"],
                "weights": weights,
                "orders": z["orders"] if "orders" in z.files else None,
                "confusion": z["confusion"] if "confusion" in z.files else None,
            }
        for n, js in meta.get("tables", {}).items():
            d[n] = pd.read_json(StringIO(js), orient="split")
        return cls.from_dict(d, factory=factory)


def _jsonable(obj: Any) -> Any:
    """Recursively convert to types that both JSON and ``.h5ad``/``.zarr`` store faithfully."""
    if isinstance(obj, dict):  # None cannot be stored in .h5ad: leave the key out (``.get`` gives None)
        return {str(k): _jsonable(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None:
        return "None"
    return obj


def _from_stored(obj: Any) -> Any:
    """Undo what a round trip through ``.h5ad`` does to :func:`_jsonable` output."""
    if isinstance(obj, dict):
        return {k: _from_stored(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [_from_stored(v) for v in obj.tolist()]
    if isinstance(obj, list):
        return [_from_stored(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str) and obj == "None":
        return None
    return obj
