"""Input checks shared by every AnnData-facing function (reading matrices: :mod:`scxl._inputs`).

Everything here raises real exceptions with messages that say what was found and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._device import resolve_device  # noqa: F401  (re-exported: the AnnData glue imports it from here)
from ._logging import DataScaleWarning, logger, warn


def is_mudata(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`mudata.MuData` (without importing mudata)."""
    return type(obj).__name__ == "MuData" and hasattr(obj, "mod")


def check_adata(adata: Any, *, allow_mudata: bool = True) -> None:
    """Raise if ``adata`` is not a usable, non-empty AnnData (or MuData)."""
    if is_mudata(adata):
        if not allow_mudata:
            raise TypeError(f"this function takes an AnnData; pass one modality, e.g. mdata[{next(iter(adata.mod), 'rna')!r}]")
        if adata.n_obs == 0 or len(adata.mod) == 0:
            raise ValueError("the MuData is empty (no observations or no modalities)")
        return
    if not isinstance(adata, AnnData):
        raise TypeError(f"expected an AnnData, got {type(adata).__name__}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"the AnnData is empty ({adata.n_obs} observations × {adata.n_vars} variables)")


def view_to_actual(adata: AnnData) -> None:
    """Turn a view into an actual AnnData in place (Scanpy's behaviour), with a log line."""
    if getattr(adata, "is_view", False):
        logger.warning("received a view of an AnnData; making a copy so results can be written")
        adata._init_as_actual(adata.copy())


def to_frame(table: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``table`` (``obs``/``var``) as a pandas DataFrame, optionally only some ``columns``.

    A pandas DataFrame is returned as it is; the xarray-backed ``Dataset2D`` of a lazy AnnData
    (:func:`anndata.experimental.read_lazy`) is read into memory (only ``columns``, if given),
    keeping categorical columns categorical.
    """
    if isinstance(table, pd.DataFrame):
        return table if columns is None else table[list(columns)]
    sub = table if columns is None else table[list(columns)]
    if hasattr(sub, "to_memory"):
        return sub.to_memory()
    return pd.DataFrame(sub)


def check_groupby(obs: pd.DataFrame, groupby: str, *, where: str = "adata.obs") -> pd.Series:
    """Return ``obs[groupby]`` as a categorical Series, or raise a clear error.

    ``obs`` may also be the lazy ``obs`` of :func:`anndata.experimental.read_lazy` (only the
    column ``groupby`` is read).
    """
    if not isinstance(groupby, str):
        raise TypeError(f"groupby must be the name of a column of {where}, got {type(groupby).__name__}")
    if groupby not in list(obs.columns):
        cols = ", ".join(map(repr, list(obs.columns)[:20])) or "none"
        raise KeyError(f"groupby={groupby!r} is not a column of {where} (columns: {cols})")
    col = to_frame(obs, [groupby])[groupby]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.remove_unused_categories()
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_string_dtype(col) or col.dtype == object:
        if col.dtype == object and not all(isinstance(v, str) for v in col.dropna()):
            raise TypeError(
                f"{where}[{groupby!r}] has dtype object with non-string values; it must be "
                "categorical or string. Convert it with .astype(str).astype('category')"
            )
        return col.astype("category")
    lazy = "" if isinstance(obs, pd.DataFrame) else (
        " (a lazy AnnData's obs cannot be changed in place: store the column as categorical in the file, or pass "
        "another groupby)")
    raise TypeError(
        f"{where}[{groupby!r}] has dtype {col.dtype}; it must be categorical or string to define "
        f"groups. If the values are labels, convert it (missing values stay missing): {where}[{groupby!r}] = "
        f"pd.Categorical({where}[{groupby!r}]){lazy}"
    )


def check_unique_var_names(var_names: pd.Index, *, where: str = "adata") -> None:
    """Raise if variable names are duplicated."""
    if not var_names.is_unique:
        dup = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"{where}.var_names are not unique (e.g. {dup}); run {where}.var_names_make_unique() first"
        )


#: Scales :func:`detect_scale` tells apart.
SCALES = ("counts", "log", "linear", "scaled")
#: An integer-valued, non-negative matrix whose largest value exceeds this is taken for raw counts.
COUNTS_MIN_MAX = 20.0
#: Larger values are implausible on a log scale (log1p of 5e21 counts): such data are linear.
LOG_MAX = 50.0

_NORMALISE = "sc.pp.normalize_total(adata, target_sum=1e4); sc.pp.log1p(adata)"


@dataclass(frozen=True)
class ValueSummary:
    """Range of a matrix's values, as :func:`check_values` streams through it.

    Attributes
    ----------
    minimum, maximum
        Smallest and largest value.
    integer
        Whether every value is a whole number.
    """

    minimum: float
    maximum: float
    integer: bool

    @property
    def scale(self) -> str:
        """The scale :func:`detect_scale` infers."""
        return detect_scale(self)

    def describe(self) -> str:
        """A short description for messages, e.g. ``"integer values from 0 to 4305"``."""
        kind = "integer values" if self.integer else "values"
        return f"{kind} from {self.minimum:.4g} to {self.maximum:.4g}"


def summarise_values(blocks: Any) -> ValueSummary:
    """:class:`ValueSummary` of an array or of an iterable of dense blocks (NaN/inf ignored)."""
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    lo, hi, integer, seen = np.inf, -np.inf, True, False
    for block in blocks:
        b = np.asarray(block)
        if b.dtype.kind not in "fiub":
            b = b.astype(np.float64)
        if b.dtype.kind == "f":  # in the block's own dtype: min, max and whole-number tests are exact there
            finite = np.isfinite(b)
            if not finite.all():
                b = b[finite]
        if not b.size:
            continue
        seen = True
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
        integer = integer and (b.dtype.kind != "f" or bool(np.array_equal(b, np.round(b))))
    if not seen:
        return ValueSummary(0.0, 0.0, True)
    return ValueSummary(lo, hi, integer)


def detect_scale(values: ValueSummary | np.ndarray) -> str:
    """Which scale expression values are on: ``"counts"``, ``"log"``, ``"linear"`` or ``"scaled"``.

    A pure function of the values' range (:class:`ValueSummary`, or an array to summarise):

    - any negative value → ``"scaled"`` (centred/z-scored, or log-ratios);
    - whole numbers only, largest above :data:`COUNTS_MIN_MAX` (20) → ``"counts"`` (raw counts);
    - largest above :data:`LOG_MAX` (50), implausible for log-expression → ``"linear"``
      (normalised counts, CPM, TPM);
    - otherwise → ``"log"`` (e.g. ``log1p`` of normalised counts, ``log2(TPM + 1)``).

    Parameters
    ----------
    values
        The summary, or the values themselves.

    Returns
    -------
    One of :data:`SCALES`.
    """
    v = values if isinstance(values, ValueSummary) else summarise_values(values)
    if v.minimum < 0:
        return "scaled"
    if v.integer and v.maximum > COUNTS_MIN_MAX:
        return "counts"
    if v.maximum > LOG_MAX:
        return "linear"
    return "log"


def shallow_counts(summary: ValueSummary) -> bool:
    """Whole numbers from 0 to at most :data:`COUNTS_MIN_MAX`, but not only 0/1: maybe very shallow counts.

    :func:`detect_scale` calls them ``"log"`` (binarised or small-integer data are legitimate
    inputs), but raw counts of a shallow assay (e.g. scATAC fragments per peak) look the same.
    """
    return summary.integer and summary.minimum >= 0 and 1 < summary.maximum <= COUNTS_MIN_MAX


def scale_hint(scale: str, summary: ValueSummary, source: str) -> str:
    """What the data look like and what to do, for warnings about the scale (``"shallow"``: :func:`shallow_counts`)."""
    where = "adata.X" if source == "X" else f"adata.{source}" if source.startswith(("layers", "raw")) else source
    if scale == "shallow":
        return (f"{where} holds only {summary.describe()}: too small to be sure these are raw counts, but log-normalised "
                f"expression is rarely all whole numbers. If they are counts (e.g. a shallow assay), normalise first, "
                f"e.g. {_NORMALISE} (TF-IDF for chromatin accessibility); if the models should see these values as they are "
                "(e.g. copy numbers or genotypes), ignore this warning")
    if scale == "counts":
        return (f"{where} looks like raw counts ({summary.describe()}); scxl expects log-normalised expression. "
                f"Normalise first, e.g. {_NORMALISE} (CellTypist requires the same), or pass layer= with "
                "log-normalised values")
    if scale == "linear":
        return (f"{where} holds {summary.describe()}, implausible on a log scale (larger than {LOG_MAX:g}): it looks "
                f"like linear-scale values (normalised counts, CPM, TPM). Log-transform first, e.g. sc.pp.log1p(adata)")
    if scale == "scaled":
        return (f"{where} contains negative values ({summary.describe()}): it looks centred or scaled (e.g. "
                "sc.pp.scale); scxl expects log-normalised, non-negative expression (e.g. "
                f"{_NORMALISE}). Scaled data works for training, but references such as 'universal' are truncated at 0")
    return f"{where} looks log-normalised ({summary.describe()})"


def check_values(matrix: Any, *, expect_nonnegative: bool = True, chunk_size: int = 8192, hint: str = "") -> ValueSummary:
    """Raise on NaN/inf; warn on negative values when log-expression is expected. Streams chunks.

    ``matrix`` is any reader of :mod:`scxl._inputs` (``chunks``, ``var_names``, ``source``).
    Sparse data are checked on their stored values (``stored_rows``), never densified: at a
    million cells × 2,000 genes from a backed CSR ``.h5ad`` the dense pass was 30 s of a training run.

    Returns
    -------
    The :class:`ValueSummary` of the values (its ``scale`` is :func:`detect_scale`'s answer);
    ``hint`` is added to the warning on negative values.
    """
    from scipy import sparse

    lo, hi, integer = np.inf, -np.inf, True
    stored = getattr(matrix, "stored_rows", None)
    n_obs = int(matrix.shape[0])
    for start in range(0, n_obs, chunk_size):
        sl = slice(start, min(start + chunk_size, n_obs))
        block = stored(sl) if stored is not None else matrix.rows(sl)
        if sparse.issparse(block):
            block = sparse.csr_matrix(block)
            values = block.data
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                rows = np.searchsorted(block.indptr, bad, side="right") - 1
                first = min(zip(rows.tolist(), block.indices[bad].tolist(), strict=True))
            if block.nnz < block.shape[0] * block.shape[1]:  # zeros that are not stored
                lo, hi = min(lo, 0.0), max(hi, 0.0)
        else:
            block = np.asarray(block)
            values = block
            bad = np.argwhere(~np.isfinite(block))
            if bad.size:
                first = (int(bad[0][0]), int(bad[0][1]))
        if bad.size:
            raise ValueError(
                f"{matrix.source} contains NaN or infinite values (first at row {sl.start + first[0]}, "
                f"variable {matrix.var_names[first[1]]!r}); impute or drop them first"
            )
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
            integer = integer and bool(np.all(values == np.round(values)))
    summary = ValueSummary(lo, hi, integer) if np.isfinite(lo) else ValueSummary(0.0, 0.0, True)
    if summary.minimum < 0 and expect_nonnegative:
        warn(scale_hint("scaled", summary, matrix.source) + hint, stacklevel=4, category=DataScaleWarning)
    return summary


def resolve_genes(var: pd.DataFrame, var_names: pd.Index, genes: Any, where: str = "var") -> np.ndarray:
    """Integer indices of the selected features.

    ``genes`` may be ``None`` (all), the name of a boolean ``var`` column (e.g.
    ``"highly_variable"``), a boolean mask, or a sequence of names. ``where`` names the table in
    messages (``"raw.var"`` for ``use_raw=True``).
    """
    n = len(var_names)
    if genes is None:
        return np.arange(n)
    if isinstance(genes, str):
        if genes not in var.columns:
            single = f"; to select the one gene {genes!r}, pass a list: genes=[{genes!r}]" if genes in var_names else ""
            raise KeyError(f"genes={genes!r} is not a boolean column of {where} (columns: {list(var.columns)[:20]})"
                           f"{single}")
        mask = var[genes].to_numpy()
        if mask.dtype != bool:
            raise TypeError(f"{where}[{genes!r}] must be boolean to select genes, found dtype {mask.dtype}")
        idx = np.flatnonzero(mask)
    else:
        arr = np.asarray(genes)
        if arr.dtype == bool:
            if arr.size != n:
                raise ValueError(f"boolean gene mask has length {arr.size}, expected {n}")
            idx = np.flatnonzero(arr)
        else:
            names = pd.Index(np.asarray(arr, dtype=str))
            missing = names[~names.isin(var_names)]
            if len(missing):
                raise KeyError(f"{len(missing)} requested genes are not in var_names, e.g. {missing[:5].tolist()}")
            idx = var_names.get_indexer(names)
    if idx.size == 0:
        raise ValueError("the gene selection is empty")
    return idx


def check_key_added(key_added: Any, name: str = "key_added") -> None:
    """Raise a TypeError unless ``key_added`` is a non-empty string without ``/`` (anndata writes keys)."""
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"{name} must be a non-empty string (a key of the AnnData), got {key_added!r}")
    if "/" in key_added:
        raise ValueError(f"{name}={key_added!r} contains '/', which .h5ad and .zarr cannot store in a key; choose another name")


def check_random_state(random_state: Any) -> int:
    """``random_state`` as an int, or a TypeError (scxl seeds every stochastic step from one integer)."""
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise TypeError(f"random_state must be an integer seed (e.g. random_state=0), got {random_state!r}")
    if random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer seed, got {random_state!r}")
    return int(random_state)


def check_in(value: Any, options: Sequence[Any], name: str) -> None:
    """Raise a ValueError listing the valid options."""
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(options)}")


#: Field of a result's ``params`` naming the scxl tool that wrote it (guards ``key_added``).
TOOL_FIELD = "scxl_tool"


def result_owner(entry: Any) -> str | None:
    """The scxl tool that wrote an ``uns`` entry, or ``None`` for anything else (a user's, Scanpy's)."""
    if isinstance(entry, dict):
        if "weights" in entry and "spec" in entry:
            return "train_classifier"
        params = entry.get("params")
        if isinstance(params, dict):
            if params.get(TOOL_FIELD):
                return str(params[TOOL_FIELD])
            if "explainer" in params and "names" in entry:  # rankings written before the field existed
                return "attribute"
    if isinstance(entry, pd.DataFrame) and "consistency" in entry.columns:
        return "consistency"
    return None


def check_holds_results(adata: Any, *, tool: str | None = None) -> None:
    """Raise, before any work, if results cannot be written into ``adata``: a view of a backed AnnData (or MuData).

    A tool writes its results into a view by first making it an actual object (a copy, as Scanpy
    does); anndata refuses to copy a view of a backed AnnData without a file name, so the work of
    the tool would be lost at its very end. (The ``X`` of such a view is read into memory anyway.)
    """
    if not (getattr(adata, "is_view", False) and getattr(adata, "isbacked", False)):
        return
    mu = is_mudata(adata)
    name, kind = ("mdata", "MuData") if mu else ("adata", "AnnData")
    load = "" if mu else f"{name} = {name}.to_memory() for a subset that fits in memory, or "
    raise ValueError(
        f"{name} is a view of a backed {kind} (a subset of {str(adata.filename)!r}), and "
        f"{f'xl.tl.{tool}' if tool else 'this scxl tool'} writes its results into the {kind} it is given: anndata "
        f"cannot make such a view hold them (copying a backed view needs a file name). Pass an actual {kind}: {load}"
        f"{name} = {name}.copy(filename='subset.h5{'mu' if mu else 'ad'}') to write the subset to a file and work "
        "on it backed"
    )


def check_writable(adata: Any, key: str, *, tool: str, overwrite: bool = False, layer: bool = False,
                   var_columns: Sequence[str] = ()) -> None:
    """Raise before a tool overwrites something another tool (or the user) wrote under ``key``.

    An entry written by the same tool is replaced silently (re-running a tool is normal);
    ``overwrite=True`` allows replacing anything.

    Parameters
    ----------
    adata
        The AnnData (or MuData) written to.
    key
        The ``uns`` key (and, with ``layer``, the ``layers`` key) the tool will write.
    tool
        Name of the tool, e.g. ``"attribute"``.
    overwrite
        Replace whatever is there.
    layer
        The tool also writes ``layers[key]``.
    var_columns
        ``var`` columns the tool writes.
    """
    check_holds_results(adata, tool=tool)
    check_adata(adata)
    check_key_added(key)
    if overwrite:
        return
    hint = "choose another key_added=, or pass overwrite=True to replace it"
    if key in adata.uns:
        owner = result_owner(adata.uns[key])
        if owner != tool:
            what = f"a result of xl.tl.{owner}" if owner else "an entry that scxl did not write"
            if owner == "train_classifier":
                what = "the trained ensemble (xl.tl.train_classifier); replacing it would break xl.tl.predict"
            raise ValueError(f"uns[{key!r}] already holds {what}; xl.tl.{tool} would overwrite it: {hint}")
    ours = key in adata.uns and result_owner(adata.uns[key]) == tool
    if layer and not ours and key in (getattr(adata, "layers", None) or {}):
        raise ValueError(f"layers[{key!r}] already exists and was not written by xl.tl.{tool}: {hint}")
    if var_columns and not ours:
        taken = [c for c in var_columns if c in adata.var.columns]
        if taken:
            raise ValueError(f"var already has columns {taken} that xl.tl.{tool} did not write: {hint}")


def copy_of(adata: Any, tool: str) -> Any:
    """``adata.copy()`` for a tool's ``copy=True``, with what to do instead for a backed AnnData or MuData.

    anndata cannot copy a backed object in memory without reading the whole matrix, and asks for a
    file name; scxl's tools never write to the backed file (their results go to ``uns``, ``obs``,
    ``var`` and in-memory layers), so ``copy=False`` is safe there. A view of a backed object gets
    :func:`check_holds_results`'s message (it can hold no results at all).
    """
    check_holds_results(adata, tool=tool)
    if getattr(adata, "isbacked", False):
        mu = is_mudata(adata)
        name, kind = ("mdata", "MuData") if mu else ("adata", "AnnData")
        load = "" if mu else f"; or {name}.to_memory() first if the matrix fits in memory"
        raise ValueError(f"xl.tl.{tool}(copy=True) cannot copy a backed {kind} (opened backed from "
                         f"{str(adata.filename)!r}): anndata would need to write the copy to a new file. The tool does "
                         f"not change the file (its results go to the {kind} in memory: uns, obs, var), so use "
                         f"copy=False{load}")
    return adata.copy()


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` for messages: ``"3.2 GiB"``, ``"480 MiB"``, ``"12 KiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}" if n_bytes < 10 * scale else f"{n_bytes / scale:.0f} {unit}"
    return f"{int(n_bytes)} bytes"


def available_memory_bytes(proc: str = "/proc", cgroup: str = "/sys/fs/cgroup") -> int | None:
    """Memory this process can still allocate, or ``None`` if unknown (:func:`available_memory` without its source)."""
    return available_memory(proc, cgroup)[0]


#: What limits :func:`available_memory`, for messages.
MEMORY_LIMITS = {
    "system": "the free memory of this machine",
    "cgroup": "the memory limit of this process's cgroup (a container's, or a batch job's such as Slurm --mem: "
              "ask for more there)",
    "ulimit": "this process's address-space limit (ulimit -v)",
}


def available_memory(proc: str = "/proc", cgroup: str = "/sys/fs/cgroup") -> tuple[int | None, str | None]:
    """Memory this process can still allocate and what limits it (a key of :data:`MEMORY_LIMITS`), or ``(None, None)``.

    The smallest of what the system has (``MemAvailable`` on Linux), what the process's memory
    cgroups still allow (a container's or a batch scheduler's limit: v2 ``memory.max`` at any level
    above the process, or v1 ``memory.limit_in_bytes``, less the usage that is not file cache) and
    what its address-space limit (``ulimit -v``) leaves.
    ``proc`` and ``cgroup`` are where those files are (for tests).
    """
    import os

    found = []
    try:
        with open(f"{proc}/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "system"))
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append((int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "system"))
        except (ValueError, OSError, AttributeError):
            pass
    for left, what in ((_cgroup_memory_left(proc, cgroup), "cgroup"), (_address_space_left(proc), "ulimit")):
        if left is not None:
            found.append((left, what))
    if not found:
        return None, None
    left, what = min(found, key=lambda f: f[0])
    return max(left, 0), what


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None  # "max" (no limit) or unreadable


def _stat_value(path: str, name: str) -> int | None:
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == name:
                    return int(parts[1])
    except (OSError, ValueError):
        pass
    return None


def _cgroup_memory_left(proc: str, cgroup: str) -> int | None:
    """What the memory cgroup limits leave (``None``: no limit found).

    cgroup v2: every level from the process's own group up to the root of the mount (a batch
    scheduler sets ``memory.max`` on the job's group, above the task's); v1: the group's
    ``hierarchical_memory_limit``. Usage counts without the file cache (``active_file`` +
    ``inactive_file``), which the kernel reclaims before it runs out.
    """
    import os

    v2, v1 = [], []
    try:
        with open(f"{proc}/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue  # not a cgroup line
        if parts[1] == "":
            v2.append(parts[2])
        elif "memory" in parts[1].split(","):
            v1.append(parts[2])

    def left(base: str, limit: int | None, used: int | None, prefix: str) -> int | None:
        if limit is None or used is None:
            return None
        cache = sum(_stat_value(f"{base}/memory.stat", f"{prefix}{k}_file") or 0 for k in ("active", "inactive"))
        return limit - max(used - cache, 0)

    lefts = []
    for path in v2 or ["/"]:
        # the process's group and its parents; in a container the mount's root is the container's own group
        parts = [p for p in path.strip("/").split("/") if p]
        for depth in range(len(parts), -1, -1):
            base = os.path.join(cgroup, *parts[:depth])
            room = left(base, _read_int(f"{base}/memory.max"), _read_int(f"{base}/memory.current"), "")
            if room is not None:
                lefts.append(room)
    unlimited = 1 << 60  # v1 writes "no limit" as a page-rounded 2**63 - 1
    for path in v1 or ["/"]:
        for base in dict.fromkeys((os.path.join(cgroup, "memory", path.lstrip("/")), os.path.join(cgroup, "memory"))):
            limit = _stat_value(f"{base}/memory.stat", "hierarchical_memory_limit") or _read_int(f"{base}/memory.limit_in_bytes")
            used = _read_int(f"{base}/memory.usage_in_bytes")
            if limit is not None and used is not None:
                if limit < unlimited:
                    lefts.append(left(base, limit, used, "total_"))
                break
    return min(lefts) if lefts else None


def _address_space_left(proc: str) -> int | None:
    """What ``RLIMIT_AS`` (``ulimit -v``) leaves of the address space (``None``: no limit)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    size = _stat_value(f"{proc}/self/status", "VmSize:")  # kB
    return soft - (size or 0) * 1024
