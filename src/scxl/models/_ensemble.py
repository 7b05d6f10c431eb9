"""The :class:`Ensemble`: trained members plus everything needed to use them elsewhere.

An ensemble is stored as plain arrays and metadata — in ``adata.uns[key]`` or in a standalone
``.npz`` file — and never pickled: loading a file someone sent you never executes code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._subnormal import module_without_tiny
from ._modules import build_module

FORMAT_VERSION = 1

#: Members are stored as ``model_<i>`` (``i`` = 0, 1, ...).
_MEMBER = re.compile(r"^model_(\d+)$")


class EnsembleFormatError(ValueError):
    """A stored ensemble (``adata.uns`` entry or ``.npz`` file) is damaged or inconsistent.

    The message names the source (file or ``uns`` key), the field and what was expected.
    """


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
    def finished(self) -> list[bool]:
        """Per member, whether its training ended (``False``: cut short by an interrupted training)."""
        p = self.params or {}
        if "finished" in p and len(p["finished"]) == self.n_models:
            return [bool(f) for f in p["finished"]]
        if p.get("interrupted") and "n_finished" in p:  # (recorded so for a few commits of scxl 0.1.0)
            k = min(int(p["n_finished"]), self.n_models)
            return [True] * k + [False] * (self.n_models - k)
        return [True] * self.n_models

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
            + (f"; training interrupted, {sum(self.finished)} of them finished" if not all(self.finished) else "")
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
        for m in mods:
            m.eval()
        device = self.device
        if device.type == "cpu":  # subnormal-range weights slow CPU products (scxl._subnormal): a flushed copy
            mods = [module_without_tiny(m) for m in mods]
        out = np.empty((len(mods), X.shape[0], len(self.classes)), dtype=np.float32)
        for start in range(0, X.shape[0], batch_size):
            block = X[start : start + batch_size]
            block = block.toarray() if sparse.issparse(block) else np.asarray(block)
            xb = torch.as_tensor(np.ascontiguousarray(block, dtype=np.float32), device=device)
            for i, m in enumerate(mods):
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
    def from_dict(
        cls,
        d: Mapping[str, Any],
        *,
        factory: Callable[[int, int], nn.Module] | None = None,
        source: str = "ensemble record",
    ) -> Ensemble:
        """Rebuild an ensemble from :meth:`to_dict` output (e.g. ``adata.uns["xl"]``).

        The whole record is checked first: the spec, ``classes`` against the output layer,
        ``var_names`` against the input size, the CNN gene orders, and every member's weights
        (names and shapes against a freshly built module, finite values).

        Parameters
        ----------
        d
            The record.
        factory
            The module factory, for ensembles trained with a custom model (default: the one
            registered under the spec's name, see :func:`scxl.models.register_factory`).
        source
            Where the record comes from, for error messages (e.g. ``"uns['xl']"``).

        Returns
        -------
        The ensemble, on the CPU, in eval mode.

        Raises
        ------
        EnsembleFormatError
            (a ``ValueError``) naming the source and the field that is wrong.
        """
        parts = _check_record(d, source=source, factory=factory)
        return cls(
            parts["modules"],
            classes=parts["classes"],
            var_names=parts["var_names"],
            spec=parts["spec"],
            orders=parts["orders"],
            params=_from_stored(d.get("params", {})),
            preprocessing=_from_stored(d.get("preprocessing", {})),
            history=d.get("history"),
            metrics=d.get("metrics"),
            recall=d.get("recall"),
            confusion=d.get("confusion"),
            extra=d.get("extra"),
            versions={k: str(v) for k, v in dict(d.get("versions", {}) or {}).items()},
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

        The file is checked as a whole before any module is built (see :meth:`from_dict`); a
        damaged or foreign file raises an :class:`EnsembleFormatError` naming the file and the
        field.

        Parameters
        ----------
        path
            The ``.npz`` file.
        factory
            The module factory, for ensembles trained with a custom model (default: the one
            registered under the spec's name, see :func:`scxl.models.register_factory`).

        Returns
        -------
        The ensemble, on the CPU.
        """
        import zipfile
        import zlib
        from io import StringIO

        path = Path(path)
        where = f"ensemble file {str(path)!r}"
        if not path.exists():
            raise FileNotFoundError(f"{where} does not exist")
        if path.is_dir():
            raise EnsembleFormatError(f"{where} is a directory; give the .npz file written by Ensemble.save")
        hint = "it is not an ensemble written by xl.models.Ensemble.save (or it was truncated/damaged in transfer)"
        with open(path, "rb") as fh:
            head = fh.read(64)
        if head.startswith(b"\x93NUMPY"):
            raise EnsembleFormatError(f"{where} is a .npy file holding a single array, not a .npz archive; {hint}")
        if not head.startswith(b"PK"):
            shown = head[:24].decode("utf-8", "replace")
            raise EnsembleFormatError(f"{where} is not a .npz (zip) archive (it starts with {shown!r}); {hint}")
        try:
            z = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise EnsembleFormatError(f"{where} cannot be read as a .npz archive ({type(err).__name__}: {err}); {hint}") from None
        with z:
            try:
                if "__metadata__" not in z.files:
                    raise EnsembleFormatError(f"{where} has no '__metadata__' entry; {hint}")
                try:
                    meta = json.loads(z["__metadata__"].tobytes().decode())
                except (UnicodeDecodeError, json.JSONDecodeError) as err:
                    raise EnsembleFormatError(f"{where}: '__metadata__' is not valid JSON ({err}); {hint}") from None
                if not isinstance(meta, dict):
                    raise EnsembleFormatError(f"{where}: '__metadata__' must be a JSON object, found {type(meta).__name__}; {hint}")
                version = meta.get("format_version", FORMAT_VERSION)
                if not isinstance(version, int) or version > FORMAT_VERSION:
                    raise EnsembleFormatError(
                        f"{where} has format_version {version!r}; this scxl reads versions up to {FORMAT_VERSION}: "
                        "upgrade scxl to read it")
                missing = [k for k in ("spec", "classes", "var_names") if k not in meta]
                if missing:
                    raise EnsembleFormatError(f"{where}: metadata lacks {missing}; {hint}")
                weights: dict[str, dict[str, np.ndarray]] = {}
                for name in z.files:
                    if not name.startswith("weights/"):
                        continue
                    parts = name.split("/", 2)
                    if len(parts) != 3 or not _MEMBER.match(parts[1]) or not parts[2]:
                        raise EnsembleFormatError(
                            f"{where}: array {name!r} is not named 'weights/model_<i>/<parameter>' "
                            "(members are model_0, model_1, ...)")
                    weights.setdefault(parts[1], {})[parts[2]] = z[name]
                d: dict[str, Any] = {
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
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                if isinstance(err, EnsembleFormatError):
                    raise
                raise EnsembleFormatError(f"{where} is damaged ({type(err).__name__}: {err}); {hint}") from None
        if "n_models" in meta and meta["n_models"] != len(weights):
            raise EnsembleFormatError(
                f"{where}: metadata says n_models={meta['n_models']!r} but the file holds {len(weights)} member(s) "
                f"({sorted(weights, key=_member_index)}); {hint}")
        tables = meta.get("tables", {})
        if not isinstance(tables, dict):
            raise EnsembleFormatError(f"{where}: metadata 'tables' must be an object of JSON tables")
        for n, js in tables.items():
            try:
                d[n] = pd.read_json(StringIO(js), orient="split")
            except (ValueError, TypeError) as err:
                raise EnsembleFormatError(f"{where}: table {n!r} cannot be read ({err})") from None
        return cls.from_dict(d, factory=factory, source=where)


def _member_index(name: Any) -> int:
    m = _MEMBER.match(str(name))
    return int(m.group(1)) if m else -1


def _fail(source: str, problems: list[str]) -> EnsembleFormatError:
    shown = problems[:6] if len(problems) <= 7 else [*problems[:5], problems[-1]]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return EnsembleFormatError(f"{source}: " + "; ".join(shown) + more)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1


def _check_spec(spec: Any) -> list[str]:
    """Problems of an architecture spec (empty when usable)."""
    if not isinstance(spec, dict):
        return [f"'spec' must be a dict describing the architecture, found {type(spec).__name__}"]
    probs = []
    kind = spec.get("type")
    if kind not in ("mlp", "cnn", "custom"):
        probs.append(f"spec type {kind!r} is not one of 'mlp', 'cnn', 'custom'")
    for f in ("n_features", "n_classes"):
        if not _positive_int(spec.get(f)):
            probs.append(f"spec {f}={spec.get(f)!r} is not a positive integer")
    if kind == "mlp":
        hidden = spec.get("hidden")
        hidden = [hidden] if np.ndim(hidden) == 0 else list(np.asarray(hidden).ravel()) if hidden is not None else None
        if not hidden or not all(_positive_int(h) for h in hidden):
            probs.append(f"spec hidden={spec.get('hidden')!r} must be a list of positive integers")
        if "batchnorm" not in spec or not isinstance(spec["batchnorm"], bool | np.bool_):
            probs.append(f"spec batchnorm={spec.get('batchnorm')!r} must be true or false")
    if kind == "cnn":
        ch, ks = spec.get("channels"), spec.get("kernels")
        ok = all(isinstance(v, list | tuple | np.ndarray) and len(v) and all(_positive_int(x) for x in np.asarray(v).ravel())
                 for v in (ch, ks))
        if not ok or len(ch) != len(ks):
            probs.append(f"spec channels={ch!r} and kernels={ks!r} must be lists of positive integers of the same length")
    if kind in ("mlp", "cnn"):
        p = spec.get("dropout")
        if not isinstance(p, int | float | np.floating) or isinstance(p, bool) or not 0 <= float(p) < 1:
            probs.append(f"spec dropout={p!r} must be a number in [0, 1)")
    return probs


def _names(value: Any, field: str, expected: int, spec_field: str) -> tuple[list[str] | None, list[str]]:
    if isinstance(value, str | bytes) or value is None:
        return None, [f"'{field}' must be a list of names, found {type(value).__name__}"]
    arr = np.asarray(value)
    if arr.ndim != 1:
        return None, [f"'{field}' must be one-dimensional, found shape {arr.shape}"]
    names = [str(v) for v in arr.tolist()]
    probs = []
    if len(names) != expected:
        probs.append(f"'{field}' has {len(names)} entries but spec {spec_field}={expected} "
                     f"({'the output layer size' if field == 'classes' else 'the input size of the members'})")
    dup = pd.Index(names)[pd.Index(names).duplicated()].unique().tolist()
    if dup:
        probs.append(f"'{field}' has duplicated entries, e.g. {dup[:3]}")
    return names, probs


def _explain_shape(spec: dict, expected: tuple, got: tuple) -> str:
    """Which spec fields an expected parameter shape derives from (for messages)."""
    fields = {"n_features": spec.get("n_features"), "n_classes": spec.get("n_classes")}
    for f in ("hidden", "channels", "kernels"):
        v = spec.get(f)
        if v is not None:
            for i, x in enumerate(np.atleast_1d(np.asarray(v)).tolist()):
                fields[f"{f}[{i}]"] = x
    why = []
    for i, e in enumerate(expected):
        if i >= len(got) or got[i] != e:
            why += [f"{k}={v}" for k, v in fields.items() if v == e and f"{k}={v}" not in why]
    return f" from spec {', '.join(why)}" if why else ""


def _check_record(d: Any, *, source: str, factory) -> dict[str, Any]:
    """Validate an ensemble record as a whole; return its parts with the members built and loaded."""
    if not isinstance(d, Mapping):
        raise EnsembleFormatError(f"{source} is not an scxl ensemble: expected a dict, found {type(d).__name__}")
    missing = [k for k in ("spec", "classes", "var_names", "weights") if k not in d]
    if missing:
        raise EnsembleFormatError(f"{source} is not an scxl ensemble: missing {missing} (written by xl.tl.train_classifier "
                                  "or Ensemble.save)")
    spec = _from_stored(d["spec"])
    probs = _check_spec(spec)
    if probs:
        raise _fail(source, probs)
    n_features, n_classes = int(spec["n_features"]), int(spec["n_classes"])
    classes, p1 = _names(d["classes"], "classes", n_classes, "n_classes")
    var_names, p2 = _names(d["var_names"], "var_names", n_features, "n_features")
    probs = p1 + p2

    weights = d["weights"]
    if not isinstance(weights, Mapping):
        raise _fail(source, probs + [f"'weights' must be a dict of members (model_0, model_1, ...), found {type(weights).__name__}"])
    odd = [k for k in weights if not _MEMBER.match(str(k))]
    if odd:
        raise _fail(source, probs + [f"'weights' has entries {odd[:3]} not named model_<i> (members are model_0, model_1, ...)"])
    keys = sorted(weights, key=_member_index)
    if not keys:
        raise _fail(source, probs + ["'weights' holds no member"])
    idx = [_member_index(k) for k in keys]
    if idx != list(range(len(keys))):
        probs.append(f"members must be model_0 … model_{len(keys) - 1}, found {keys}")

    orders = d.get("orders")
    orders = None if orders is None or (isinstance(orders, str) and orders == "None") else np.asarray(orders)
    if spec["type"] == "cnn":
        if orders is None:
            probs.append("a CNN ensemble needs 'orders' (the gene layout of every member)")
        elif orders.shape != (len(keys), n_features):
            probs.append(f"'orders' has shape {orders.shape}, expected ({len(keys)}, {n_features}) from {len(keys)} members "
                         f"and spec n_features={n_features}")
        else:
            bad = [keys[i] for i, o in enumerate(orders) if not np.array_equal(np.sort(o), np.arange(n_features))]
            if bad:
                probs.append(f"'orders' of {bad[:3]} is not a permutation of range({n_features})")
    elif orders is not None:
        probs.append(f"'orders' is only for CNN ensembles, but spec type is {spec['type']!r}")
    if probs:
        raise _fail(source, probs)

    modules = []
    for i, k in enumerate(keys):
        state = weights[k]
        if not isinstance(state, Mapping):
            raise _fail(source, [f"member {k} must be a dict of parameter name → array, found {type(state).__name__}"])
        fresh = build_module(spec, order=None if orders is None else orders[i], factory=factory, initialise=False)
        expected = fresh.state_dict()  # (every entry is loaded below, or the record is refused)
        p = []
        lost = [n for n in expected if n not in state]
        extra = [n for n in state if n not in expected]
        if lost:
            p.append(f"member {k} lacks weight(s) {lost[:4]}")
        if extra:
            p.append(f"member {k} has unexpected weight(s) {extra[:4]} for a {spec['type'].upper()} built from its spec")
        tensors = {}
        for n, ref in expected.items():
            if n not in state:
                continue
            try:
                arr = np.asarray(state[n])
            except Exception as err:  # anything unreadable is a format error
                p.append(f"member {k} weight {n!r} is not an array ({err})")
                continue
            shape = tuple(ref.shape)
            if arr.dtype.kind not in "fiub":
                p.append(f"member {k} weight {n!r} has dtype {arr.dtype}, expected numbers")
            elif tuple(arr.shape) != shape:
                p.append(f"member {k} weight {n!r} has shape {tuple(arr.shape)}, expected {shape}"
                         f"{_explain_shape(spec, shape, tuple(arr.shape))}")
            elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
                p.append(f"member {k} weight {n!r} has {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
            else:
                tensors[n] = torch.as_tensor(np.ascontiguousarray(arr)).to(ref.dtype)
        if p:
            if spec["type"] == "custom":
                p.append(f"the factory ({spec.get('factory', '?')}) does not build the module the ensemble was trained "
                         "with: pass the same factory")
            raise _fail(source, p)
        fresh.load_state_dict(tensors)
        fresh.eval()
        modules.append(fresh)
    return {"spec": spec, "classes": classes, "var_names": var_names, "orders": orders, "modules": modules}


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
