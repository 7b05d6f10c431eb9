"""Make the small copies of the real data sets in ``tests/data`` from the full files.

Run by a developer, never by the tests::

    .venv/bin/python tests/data/make_test_data.py [FULL_DATA_FOLDER]

``FULL_DATA_FOLDER`` defaults to ``../shared/data`` beside the checkout. Every source file is
checked against the sha256 of the scxl registry (``scxl.datasets._real._FILES``, the values of
the folder's ``SOURCES.md``) before it is used. Small files are copied byte for byte; four large
ones are trimmed (genes only: every sample or cell is kept), see ``TRIMMED`` below and
``tests/data/README.md``. The output is deterministic (made with anndata 0.12.19, mudata 0.3.10,
h5py 3.16 / HDF5 2.0, scanpy 1.11.5); the script prints the sha256 and size of every file, to be
recorded as ``trimmed_sha256`` in the registry and in ``README.md``.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scanpy as sc
from anndata.io import write_elem
from scipy import sparse

import scxl as xl
from scxl.datasets import _real

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[1].parent / "shared" / "data"

# copied unchanged (same bytes, same sha256 as the full file)
COPIED = [
    "gtex_26tissues_467genes_sepira.h5ad",
    "tissues_microarray_7tissues_dslabs.h5ad",
    "tissueenrich_hpa_v18_tpm.h5ad",
    "tissue_specific_genes_hpa_v18_tissueenrich.tsv.gz",
    "tcga_brca_multiomics_mixomics.h5mu",
    "housekeeping_eisenberg2013_HK_genes.txt",
    "tf_lambert2018.txt",
    "tf_pyscenic_hs_hgnc_tfs.txt",
    "ensembl105_gene_annotation.tsv.gz",
]

# the genes checked by tests/datasets/test_real.py: always kept
TCGA_SPOT_CHECKS = ["MS4A1", "CD19", "STAR", "CYP11B1", "PMEL", "MLANA", "FOXI1", "ALB"]
# tutorials/bulk_tissues.ipynb: highly_variable_genes(n_top_genes=2000, flavor="seurat")
TCGA_N_HVG = 2000
TCGA_N_OTHER = 500  # most variable genes that are not protein-coding
PANCREAS_MARKERS = ["Ins2", "Gcg", "Ghrl", "Krt19"]
PANCREAS_N_GENES = 500
HPA_N_GENES = 3000
ECCITE_N_RNA = 500

# numeric arrays: gzip level 9 after the byte-shuffle filter (both built into HDF5; readers need
# nothing extra). Strings and scalars keep anndata's defaults.
_NUMERIC = {"compression": "gzip", "compression_opts": 9, "shuffle": True}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_source(folder: Path, filename: str) -> Path:
    path = folder / filename
    digest = sha256(path)
    if digest != _real._FILES[filename].sha256:
        raise SystemExit(
            f"{path}: sha256 {digest} is not the registered {_real._FILES[filename].sha256}"
        )
    return path


def _order(score: np.ndarray, names: pd.Index) -> list[str]:
    """Names by decreasing score; ties in file order (stable)."""
    return list(names[np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")])


def _fill(first: list[str], ranked: list[str], n: int) -> list[str]:
    """``first``, then names from ``ranked`` not yet chosen, until ``n``."""
    chosen = list(dict.fromkeys(first))
    seen = set(chosen)
    for name in ranked:
        if len(chosen) >= n:
            break
        if name not in seen:
            chosen.append(name)
            seen.add(name)
    return chosen


def _subset_vars(adata: ad.AnnData, keep: list[str]) -> ad.AnnData:
    """Columns ``keep`` in the file's own gene order."""
    mask = adata.var_names.isin(keep)
    assert mask.sum() == len(set(keep)), "a gene to keep is missing"
    return adata[:, mask].copy()


def _source(adata, filename: str, how: str) -> dict[str, str]:
    record = {str(k): str(v) for k, v in dict(adata.uns["source"]).items()}
    record["trimmed"] = how
    record["trimmed_from"] = f"{filename} sha256 {_real._FILES[filename].sha256}"
    return record


def _write_anndata_parts(f: h5py.Group, adata: ad.AnnData) -> None:
    """Write an AnnData into ``f`` like ``write_h5ad``, with shuffled gzip-9 numeric arrays."""
    f.attrs["encoding-type"] = "anndata"
    f.attrs["encoding-version"] = "0.1.0"
    if adata.X is not None:
        write_elem(f, "X", adata.X, dataset_kwargs=_NUMERIC)
    for key in ("obs", "var"):
        write_elem(f, key, getattr(adata, key), dataset_kwargs=_NUMERIC)
    for key in ("obsm", "varm", "obsp", "varp", "layers"):
        write_elem(f, key, dict(getattr(adata, key)), dataset_kwargs=_NUMERIC)
    write_elem(f, "uns", dict(adata.uns))  # scalar strings: no filters


def write_h5ad(adata: ad.AnnData, path: Path) -> None:
    with h5py.File(path, "w") as f:
        _write_anndata_parts(f, adata)


# ------------------------------------------------------------------------------------------------


def trim_tcga(src: Path, out: Path) -> None:
    filename = "tcga_6types_counts.h5ad"
    raw = ad.read_h5ad(check_source(src, filename))
    xl.settings.datasetdir = src
    # the tutorial's selection, on the full protein-coding table
    pc = xl.datasets.tcga6(protein_coding_only=True)
    hvg = sc.pp.highly_variable_genes(pc, n_top_genes=TCGA_N_HVG, flavor="seurat", inplace=False)
    coding = list(pc.var_names[hvg["highly_variable"].to_numpy()])
    # the most variable other genes, by the variance of log1p(CPM) over all genes
    full = xl.datasets.tcga6()
    x = full.X
    var = np.asarray(x.power(2).mean(0)).ravel() - np.asarray(x.mean(0)).ravel() ** 2
    other = full.var["biotype"].to_numpy() != "protein_coding"
    ranked = _order(np.where(other, var, -np.inf), full.var_names)[:TCGA_N_OTHER]
    assert all(full.var.loc[g, "biotype"] != "protein_coding" for g in ranked)
    extra = [g for g in TCGA_SPOT_CHECKS if g not in set(coding) | set(ranked)]
    sub = _subset_vars(raw, coding + ranked + extra)
    sub.X = sparse.csr_matrix(sub.X).astype(np.int32)  # integer counts; the loader casts them
    assert np.array_equal(sub.X.toarray(), raw[:, sub.var_names].X.toarray())
    assert int((sub.var["biotype"] == "protein_coding").sum()) == TCGA_N_HVG
    in_other = [g for g in TCGA_SPOT_CHECKS if g in set(ranked)]
    sub.uns["source"] = _source(
        raw,
        filename,
        f"genes only, all 364 samples: the {TCGA_N_HVG} protein-coding genes that "
        "scanpy.pp.highly_variable_genes(n_top_genes=2000, flavor='seurat') selects on "
        "log1p(CPM) of all 17,771 protein-coding genes (as tutorials/bulk_tissues.ipynb does), "
        f"and the {TCGA_N_OTHER} other genes (var['biotype'] not protein_coding; among them "
        f"{', '.join(in_other) or 'none of the spot-check genes'}) with the highest variance of "
        "log1p(CPM) over all 39,021 genes"
        + (f", plus {', '.join(extra)}" if extra else "")
        + "; raw counts unchanged, stored as int32",
    )
    write_h5ad(sub, out / filename)


def trim_pancreas(src: Path, out: Path) -> None:
    filename = "pancreas_mouse_739cells_veloviz.h5ad"
    raw = ad.read_h5ad(check_source(src, filename))
    logx = _real._log1p_scaled(raw.layers["spliced"], 1e4)
    var = np.asarray(logx.power(2).mean(0)).ravel() - np.asarray(logx.mean(0)).ravel() ** 2
    keep = _fill(PANCREAS_MARKERS, _order(var, raw.var_names), PANCREAS_N_GENES)
    sub = _subset_vars(raw, keep)
    for key in ("spliced", "unspliced"):
        sub.layers[key] = sparse.csr_matrix(sub.layers[key])
    sub.X = sparse.csr_matrix(sub.X)
    sub.uns["source"] = _source(
        raw,
        filename,
        f"genes only, all 739 cells: {', '.join(PANCREAS_MARKERS)} plus the genes with the "
        "highest variance of log1p(spliced counts normalised to 1e4 over all 7,192 genes), "
        f"{PANCREAS_N_GENES} genes; counts and obsm['X_pca'] (computed upstream on all genes) "
        "unchanged",
    )
    write_h5ad(sub, out / filename)


def trim_hpa_consensus(src: Path, out: Path) -> None:
    filename = "hpa_tissue_consensus_ntpm.h5ad"
    raw = ad.read_h5ad(check_source(src, filename))
    has_nan = raw.var_names[raw.var["has_nan"].to_numpy()]
    x = np.log1p(np.asarray(raw.X, dtype=np.float64))
    var = np.where(raw.var["has_nan"].to_numpy(), -np.inf, np.nanvar(x, axis=0))
    keep = _fill([*has_nan, "ALB"], _order(var, raw.var_names), HPA_N_GENES)
    sub = _subset_vars(raw, keep)
    assert int(np.isnan(sub.X).sum()) == int(np.isnan(raw.X).sum())  # every NaN kept
    sub.uns["source"] = _source(
        raw,
        filename,
        f"genes only, all 61 tissues: the {len(has_nan):,} genes with a NaN (var['has_nan']; all "
        "17,753 NaN values kept), ALB, and the genes without NaN with the highest variance of "
        f"log1p(nTPM) across tissues, {HPA_N_GENES} genes; values unchanged",
    )
    write_h5ad(sub, out / filename)


def trim_eccite(src: Path, out: Path) -> None:
    import mudata

    filename = "eccite_pbmc_500cells_citefuse.h5mu"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        mdata = mudata.read_h5mu(check_source(src, filename))
    rna = mdata["rna"]
    shared = [g for g in rna.var_names if g in set(mdata["prot"].var_names)]
    total = np.asarray(rna.X.sum(0)).ravel()
    keep = _fill(shared, _order(total, rna.var_names), ECCITE_N_RNA)
    mods = {
        "rna": _subset_vars(rna, keep),
        "prot": mdata["prot"].copy(),
        "hto": mdata["hto"].copy(),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        small = mudata.MuData(mods)
    small.uns["source"] = _source(
        mdata,
        filename,
        f"RNA genes only, all 500 cells: the {len(shared)} RNA genes that are also protein "
        f"(ADT) names, plus the RNA genes with the most UMIs, {ECCITE_N_RNA} genes; 'prot' and "
        "'hto' unchanged; counts unchanged",
    )
    # mudata's own writer (gzip level 9, no shuffle: it passes the options to scalars too)
    mudata.write_h5mu(out / filename, small, compression="gzip", compression_opts=9)


TRIMMED = {
    "tcga_6types_counts.h5ad": trim_tcga,
    "pancreas_mouse_739cells_veloviz.h5ad": trim_pancreas,
    "hpa_tissue_consensus_ntpm.h5ad": trim_hpa_consensus,
    "eccite_pbmc_500cells_citefuse.h5mu": trim_eccite,
}


def main(argv: list[str]) -> None:
    src = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    if not src.is_dir():
        raise SystemExit(f"full data folder {src} not found; pass it as the first argument")
    assert set(COPIED) | set(TRIMMED) == set(_real._FILES), "every registered file is shipped"
    xl.settings.progress = False
    for filename in COPIED:
        shutil.copyfile(check_source(src, filename), HERE / filename)
    for trim in TRIMMED.values():
        trim(src, HERE)
    total = 0
    print(f"{'file':<52} {'bytes':>10}  sha256")
    for filename in sorted(_real._FILES):
        path = HERE / filename
        total += path.stat().st_size
        kind = "trimmed" if filename in TRIMMED else "copied"
        print(f"{filename:<52} {path.stat().st_size:>10}  {sha256(path)}  {kind}")
    print(f"{'total':<52} {total:>10}")


if __name__ == "__main__":
    main(sys.argv)
