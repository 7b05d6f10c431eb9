"""``xl.pp.rewrite_as_csr``: a copy of an ``.h5ad`` file with its CSC matrices stored as CSR, out of core."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .._logging import logger

#: Bytes of working memory per entry (float32 values) while entries are read and sent to their buckets (row,
#: column, value, bucket, order, the bucket's piece) and while a bucket is sorted into rows (the bucket as
#: read, scipy's CSC and CSR copies of it), set from the measured peaks (about twice the arrays' own bytes:
#: h5py's read buffers, temporaries) so that the peak stays near ``max_bytes`` above the process's own.
_READ_BYTES = 100
_BUCKET_BYTES = 80
#: Where an ``.h5ad`` file keeps matrices with a row per observation (``raw/X`` too).
_MATRIX_PARENTS = ("layers",)
_MATRICES = ("X", "raw/X", "raw.X")  # (raw.X: files of anndata < 0.7)


def rewrite_as_csr(
    adata,
    filename: str | os.PathLike,
    *,
    max_bytes: int = 2**28,
    overwrite: bool = False,
) -> Path:
    """Copy an ``.h5ad`` file with its CSC matrices stored as CSR, reading a bounded block at a time.

    scxl streams a backed file by blocks of rows; a CSC (column-compressed) matrix, as files
    converted from R often hold, stores columns instead, so every block of rows reads part of every
    column: several times slower (2.5× for attribute, 5× for predict, measured at 50,000 × 500).
    In memory the fix is ``adata.X = adata.X.tocsr()`` before writing the file; this function does
    the same for files larger than memory, in about twice the time of the in-memory conversion.

    Every CSC matrix among ``X``, ``layers`` and ``raw/X`` is rewritten as CSR with the same values
    (column indices sorted within each row, the stored zeros and duplicates kept); every other
    element of the file (obs, var, obsm, obsp, uns, dense or CSR matrices, ...) is copied unchanged.
    The entries are distributed over temporary bucket files beside ``filename`` (one sequential
    pass over the matrix), then each bucket is sorted into rows and written. Free disk space in the
    destination's folder: the bucket files, 12 bytes an entry for float32 values (about 1.5× the
    uncompressed matrix), plus the copy itself. The memory stays near ``max_bytes`` above the
    process's own whatever the size of the file, unless a single row holds more entries than a
    bucket (very wide data: a row is never split).

    An exception or Ctrl-C removes the partial copy and the bucket files (``scxl csr`` takes
    ``SIGTERM`` as a Ctrl-C too); a process killed outright (``SIGKILL``, or ``SIGTERM`` in a
    Python session without a handler for it) leaves a hidden ``.NAME.partial`` file and a
    ``.scxl_csr_*`` folder beside the destination, to delete by hand.

    Parameters
    ----------
    adata
        The path of an ``.h5ad`` file, or an AnnData read from one with ``backed="r"`` (its file
        is read; the object is not changed).
    filename
        The ``.h5ad`` file to write. It must differ from the source.
    max_bytes
        Working memory: the peak stays near this above the process's own. Larger is not faster
        (`benchmarks/results/rewrite_csr_2core_cpu.txt`); much smaller is slower (more pieces of
        bucket files to write).
    overwrite
        Replace ``filename`` if it exists.

    Returns
    -------
    The path written. Open it with ``anndata.read_h5ad(path, backed="r")``.

    Examples
    --------
    >>> import tempfile, anndata as ad, scipy.sparse as sp
    >>> import scxl as xl
    >>> adata = xl.datasets.synthetic(200, 50, 2, random_state=0)
    >>> adata.X = sp.csc_matrix(adata.X)
    >>> folder = tempfile.mkdtemp()
    >>> adata.write_h5ad(f"{folder}/csc.h5ad")
    >>> path = xl.pp.rewrite_as_csr(f"{folder}/csc.h5ad", f"{folder}/csr.h5ad")
    >>> type(ad.read_h5ad(path, backed="r").X).__name__
    '_CSRDataset'
    """
    import operator

    import h5py

    if hasattr(adata, "filename") and adata.filename is None:
        raise ValueError("adata is not backed: in memory, adata.X = adata.X.tocsr() before adata.write_h5ad(...); "
                         "or pass the path of an .h5ad file")
    if not isinstance(adata, str | os.PathLike) and not hasattr(adata, "filename"):
        raise TypeError(f"adata must be the path of an .h5ad file or a backed AnnData, got {type(adata).__name__}")
    if getattr(adata, "is_view", False):
        raise ValueError("adata is a view of a backed AnnData, and rewrite_as_csr copies the whole file: pass the "
                         "AnnData itself (or its path), or write the subset with adata[...].copy(filename=...)")
    source = Path(adata.filename if hasattr(adata, "filename") else adata)
    dest = Path(filename)
    if source.suffix.lower() != ".h5ad" or dest.suffix.lower() != ".h5ad":
        raise ValueError(f"rewrite_as_csr reads and writes .h5ad files; got {source.name!r} -> {dest.name!r}")
    if not source.is_file():
        raise FileNotFoundError(f"{str(source)!r} does not exist")
    if dest.is_dir():
        raise IsADirectoryError(f"{str(dest)!r} is a folder: give the path of the .h5ad file to write")
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"the folder {str(dest.parent)!r} of the destination does not exist")
    if dest.exists() and source.resolve() == dest.resolve():
        raise ValueError(f"{str(dest)!r} is the source itself: write the copy to another file")
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{str(dest)!r} exists; pass overwrite=True to replace it")
    try:
        max_bytes = operator.index(max_bytes)
    except TypeError:
        raise TypeError(f"max_bytes must be an integer number of bytes, got {max_bytes!r}") from None
    if max_bytes < 2**16:
        raise ValueError(f"max_bytes must be at least 65536, got {max_bytes}")
    partial = dest.with_name(f".{dest.name}.partial")  # (renamed at the end: an interrupted copy leaves no .h5ad)
    try:
        try:
            src = h5py.File(source, "r")
        except OSError as err:
            raise OSError(f"cannot read {str(source)!r} as an .h5ad (HDF5) file: {err}") from None
        with src:
            try:
                out = h5py.File(partial, "w")
            except OSError as err:
                raise OSError(f"cannot write in the folder {str(dest.parent)!r}: {err}") from None
            with out:
                for key, value in src.attrs.items():
                    out.attrs[key] = value
                converted: list[str] = []
                _copy(src, out, "", converted, max_bytes, dest.parent)
        os.replace(partial, dest)
    finally:
        if partial.exists():
            partial.unlink()
    if converted:
        logger.info("finished rewrite_as_csr: wrote %s with %s stored as CSR", dest, ", ".join(converted))
    else:
        logger.info("finished rewrite_as_csr: wrote %s (it held no CSC matrix: copied unchanged)", dest)
    return dest


def _copy(src, out, prefix: str, converted: list[str], max_bytes: int, tmp_dir: Path) -> None:
    """Copy the group ``src`` into ``out``, rewriting the CSC matrices among the observation matrices."""
    import h5py

    for name, item in src.items():
        path = f"{prefix}{name}"
        if isinstance(item, h5py.Group) and _is_csc(item) and (path in _MATRICES or prefix.rstrip("/") in _MATRIX_PARENTS):
            _csc_to_csr(item, out, name, max_bytes, tmp_dir)
            converted.append(path)
        elif isinstance(item, h5py.Group) and (path in _MATRIX_PARENTS or path == "raw"):
            group = out.create_group(name)
            for key, value in item.attrs.items():
                group.attrs[key] = value
            _copy(item, group, f"{path}/", converted, max_bytes, tmp_dir)
        else:
            src.copy(item, out, name=name)


def _is_csc(group) -> bool:
    kind = group.attrs.get("encoding-type", group.attrs.get("h5sparse_format", ""))
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    return kind in ("csc_matrix", "csc")


def _csc_to_csr(group, out, name: str, max_bytes: int, tmp_dir: Path) -> None:
    """Write ``group`` (a CSC matrix in an open h5 file) as the CSR matrix ``out[name]``."""
    n_rows, n_cols = (int(v) for v in group.attrs.get("shape", group.attrs.get("h5sparse_shape")))
    indptr = group["indptr"][:].astype(np.int64)
    nnz = int(indptr[-1])
    data_in, rows_in = group["data"], group["indices"]
    value_dtype = data_in.dtype
    extra = value_dtype.itemsize - 4  # (the byte counts below are for float32 values)
    step = max(1, max_bytes // (_READ_BYTES + extra))  # entries read at a time

    counts = np.zeros(n_rows, dtype=np.int64)
    for start in range(0, nnz, step):
        counts += np.bincount(rows_in[start:start + step], minlength=n_rows)
    out_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=out_indptr[1:])
    # Row ranges of at most max_bytes of entries each (a row longer than that is a bucket of its own).
    bounds = [0]
    per_bucket = max(1, max_bytes // (_BUCKET_BYTES + 2 * extra))
    while bounds[-1] < n_rows:
        r0 = bounds[-1]
        r1 = int(np.searchsorted(out_indptr, out_indptr[r0] + per_bucket, side="right")) - 1
        bounds.append(min(n_rows, max(r1, r0 + 1)))
    starts = np.asarray(bounds[:-1])

    compression = {"compression": data_in.compression, "compression_opts": data_in.compression_opts} \
        if data_in.compression else {}
    target = out.create_group(name)
    for key, value in group.attrs.items():
        target.attrs[key] = value
    target.attrs["encoding-type"] = "csr_matrix"
    target.attrs["encoding-version"] = group.attrs.get("encoding-version", "0.1.0")
    target.attrs["shape"] = (n_rows, n_cols)
    if "h5sparse_format" in group.attrs:
        target.attrs["h5sparse_format"] = "csr"
    chunks = (min(max(nnz, 1), 2**18),) if compression else None
    data_out = target.create_dataset("data", shape=(nnz,), dtype=value_dtype, chunks=chunks, **compression)
    index_dtype = np.int32 if n_cols < 2**31 else np.int64
    cols_out = target.create_dataset("indices", shape=(nnz,), dtype=index_dtype, chunks=chunks, **compression)
    target.create_dataset("indptr", data=out_indptr)

    if len(starts) == 1:  # one bucket: in memory, no temporary files
        rows, cols, values = _read_entries(data_in, rows_in, indptr, 0, nnz)
        _write_bucket(rows, cols, values, n_rows, n_cols, data_out, cols_out, 0)
        return
    folder = Path(tempfile.mkdtemp(prefix=".scxl_csr_", dir=tmp_dir))
    try:
        kinds = np.dtype([("row", np.int32), ("col", np.int32), ("value", value_dtype)])  # (rows local to the bucket)
        bucket_of_row = np.repeat(np.arange(len(starts), dtype=np.int16 if len(starts) < 2**15 else np.int64),
                                  np.diff(bounds))  # (a gather: faster than a search per entry)
        for start in range(0, nnz, step):  # one sequential pass over the CSC entries
            rows, cols, values = _read_entries(data_in, rows_in, indptr, start, min(nnz, start + step))
            bucket = bucket_of_row[rows]
            order = np.argsort(bucket, kind="stable")  # (stable: each bucket's entries stay in column order; radix on int16)
            cuts = np.searchsorted(bucket[order], np.arange(len(starts) + 1))
            for b in np.flatnonzero(np.diff(cuts)):
                sel = order[cuts[b]:cuts[b + 1]]
                chunk = np.empty(len(sel), dtype=kinds)
                chunk["row"], chunk["col"], chunk["value"] = rows[sel] - bounds[b], cols[sel], values[sel]
                with open(folder / f"{b}.bin", "ab") as f:  # (opened per piece: no limit on open files)
                    f.write(chunk.tobytes())
        for b in range(len(starts)):
            if not (folder / f"{b}.bin").exists():
                continue  # (rows without entries)
            chunk = np.fromfile(folder / f"{b}.bin", dtype=kinds)
            _write_bucket(chunk["row"], chunk["col"], chunk["value"], bounds[b + 1] - bounds[b], n_cols, data_out,
                          cols_out, out_indptr[bounds[b]])
            (folder / f"{b}.bin").unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_entries(data_in, rows_in, indptr: np.ndarray, start: int, stop: int):
    """Rows, columns and values of the CSC entries ``start:stop`` (in column order)."""
    rows = np.asarray(rows_in[start:stop], dtype=np.int64)
    values = np.asarray(data_in[start:stop])
    first = int(np.searchsorted(indptr, start, side="right")) - 1
    last = int(np.searchsorted(indptr, stop, side="left"))
    spans = np.diff(np.clip(indptr[first:last + 1], start, stop))
    cols = np.repeat(np.arange(first, first + len(spans), dtype=np.int32), spans)
    return rows, cols, values


def _write_bucket(rows, cols, values, n_rows: int, n_cols: int, data_out, cols_out, offset: int) -> None:
    """Write a bucket's entries (rows counted from its first, in column order) as CSR rows at ``offset`` of the output.

    In column order they are a CSC matrix of those rows; scipy's CSC → CSR conversion (a counting
    sort, linear in the entries) puts them into rows with the columns increasing, keeping stored
    zeros and duplicates as they are.
    """
    if not len(rows):
        return
    from scipy import sparse

    col_ptr = np.searchsorted(cols, np.arange(n_cols + 1))
    block = sparse.csc_matrix((values, rows, col_ptr), shape=(n_rows, n_cols)).tocsr()
    data_out[offset:offset + block.nnz] = block.data
    cols_out[offset:offset + block.nnz] = block.indices
