"""Loaders of real public data sets read from ``xl.settings.datasetdir``.

Every file is read only when its loader is called. Provenance, licences and checksums of the
files are listed in ``SOURCES.md`` next to them; a short record is kept in ``uns["source"]``.

The scxl repository ships small copies of these files in ``tests/data`` for its test suite
(``tests/data/README.md``): most are the full files, byte for byte; four are trimmed to fewer
genes, with the same layout, and read by the same loaders. A trimmed copy says so in its own
``uns["source"]["trimmed"]``, and its checksum is registered separately (``trimmed_sha256``).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._logging import ScxlWarning, logger
from .._validation import check_in

if TYPE_CHECKING:  # pragma: no cover
    from mudata import MuData


@dataclass(frozen=True)
class _File:
    """A staged data file: what it is, where it comes from, its sha256.

    ``sha256`` is that of the full file (``SOURCES.md``); ``trimmed_sha256`` that of the trimmed
    copy in the repository's ``tests/data`` (``None``: the repository ships the full file).
    """

    what: str
    source: str
    sha256: str
    trimmed_sha256: str | None = None


_FILES: dict[str, _File] = {
    "tcga_6types_counts.h5ad": _File(
        "TCGA primary tumours of 6 cancer types, raw read counts (364 samples x 39,021 genes)",
        "umccr/RNAsum.data@15bb33cd7f5d241e09bddb8a8311e9638693c4c2:"
        "inst/extdata/ref_data/TCGA_{ACC,CHOL,DLBC,KICH,UCS,UVM}_Counts.exp.gz (NCI GDC / TCGA)",
        "f99df1f64a079c8ad7642937ed9e948300f5ba1cc5cc1d28bedbc7237a98218e",
        trimmed_sha256="088e516530c796c35a71d2426952a68f5fa9d2290bc40afdaf9c621a59e04794",
    ),
    "gtex_26tissues_467genes_sepira.h5ad": _File(
        "GTEx, 26 tissues x 20 samples, 467 genes",
        "YC3/SEPIRA@eb42c840eab1dc09de34c71267bcadeae37aa108:data/GeneExp.rda (GTEx portal)",
        "a14f0c4ce428335e72df5192351104903e750a310c273852babac7bc200b8192",
    ),
    "tissues_microarray_7tissues_dslabs.h5ad": _File(
        "7 human tissues, Affymetrix HG-U133A microarray (189 samples x 500 genes)",
        "rafalab/dslabs@08c7b6f1708267f3a3ba6ec001e7793463cbc4a3:data/tissue_gene_expression.rda",
        "bb40c018e842004a729d136c1c7c942a14e3d2709eeb02a73af26a332e99a377",
    ),
    "hpa_tissue_consensus_ntpm.h5ad": _File(
        "Human Protein Atlas consensus nTPM, 61 tissues/cell types x 19,366 genes",
        "kircherlab/cfDNA@8891e408593e9adff52ce90ec0ca63c19aecd833:"
        "resources/protein_atlas/RNAtableTissue.tsv.gz (proteinatlas.org rna_tissue_consensus)",
        "b2f77c4375ff556adab68e082b4624a0454ed7c203a1a580833f334a54ede40c",
        trimmed_sha256="dfbde445093259bfe6268099884fdd56cb630765c412f62d96e5d227d77378f3",
    ),
    "tissueenrich_hpa_v18_tpm.h5ad": _File(
        "Human Protein Atlas v18 TPM as used by TissueEnrich, 35 tissues x 19,332 genes",
        "Tuteja-Lab/TissueEnrich@c54f900fd5db8fe891c7765fb0b1b0b37fd4d2e1:"
        "inst/extdata/combine-expression.rda",
        "34407028c1af743fc1c7c3e35037153d2254d5b42faa3b4be542586d9ac0447d",
    ),
    "tissue_specific_genes_hpa_v18_tissueenrich.tsv.gz": _File(
        "TissueEnrich tissue-specific gene groups for HPA v18",
        "Tuteja-Lab/TissueEnrich@c54f900fd5db8fe891c7765fb0b1b0b37fd4d2e1:"
        "inst/extdata/combine-expression.rda (tissueSpecificGenes)",
        "096b8db3e31a937ebc21f525c5f782a57ecde319da5c5ff9950d8604d4eac456",
    ),
    "pancreas_mouse_739cells_veloviz.h5ad": _File(
        "mouse E15.5 pancreatic endocrinogenesis, 739 cells, spliced/unspliced counts",
        "JEFworks-Lab/veloviz@80e12d498c54e3c3adfe3cffdc9f34af04d51041:data/pancreas.rda "
        "(Bastidas-Ponce et al. 2019, GEO GSE132188)",
        "007b7dd1db4812de8d1b86bd8c6060599cb8e0346bdd61339c794fd3e58167e7",
        trimmed_sha256="8cb0384300c1166712a19416a43e42f6f31ac73b6622054a655c50327a81f842",
    ),
    "eccite_pbmc_500cells_citefuse.h5mu": _File(
        "ECCITE-seq PBMC, 500 cells, RNA + protein + hashtag counts (MuData)",
        "SydneyBioX/CiteFuse@b6075864d8930967946022fdfbbf57a6a120061f:data/CITEseq_example.rda "
        "(Mimitou et al. 2019, GEO GSE126310)",
        "a595177716676c02dda9341a7f22cf59a1f9ad2a9067385d00e431513a465c7f",
        trimmed_sha256="95dba4c249359ff444d00f09d9130f40a114cc3bd4476382d2993356935aa610",
    ),
    "tcga_brca_multiomics_mixomics.h5mu": _File(
        "TCGA breast cancer mRNA + miRNA + protein with PAM50 subtype (MuData)",
        "mixOmicsTeam/mixOmics@d732983ad52fdd7fb2496a7ca8ac1bec501a63ab:data/breast.TCGA.rda",
        "8c0639591d1eb3e4cd2aa2e557c3a4071cba650120ca0708be60b4d9e447deb0",
    ),
    "tf_lambert2018.txt": _File(
        "1,639 human transcription factors (Lambert et al. 2018)",
        "aertslab/pySCENIC@06bafba412792f6efa5a552a23bb221cc3bdea1b:resources/lambert2018.txt",
        "373b64d3dbc058a7388b795b396cd28dddbf79480ad1cb21ec9fa7a8fc93c27d",
    ),
    "tf_pyscenic_hs_hgnc_tfs.txt": _File(
        "1,839 human transcription factors (pySCENIC hs_hgnc_tfs)",
        "aertslab/pySCENIC@06bafba412792f6efa5a552a23bb221cc3bdea1b:resources/hs_hgnc_tfs.txt",
        "b3d59559bc1c04df61954b4051f1a4e0c17c849f532cd6271f749d832a18509a",
    ),
    "housekeeping_eisenberg2013_HK_genes.txt": _File(
        "3,804 human housekeeping genes (Eisenberg & Levanon 2013, HK_genes.txt)",
        "Nanil-Health/random_data@79477537219c3adace2c4e79fcbc02c90af29910:HK_genes.tsv",
        "df7aa10e635efb5b0df7dd607e5c11c91df2bdf3e321fb97c0c088ea96a60756",
    ),
    "ensembl105_gene_annotation.tsv.gz": _File(
        "Ensembl 105 human gene annotation (gene_id, symbol, biotype, chrom, start, end)",
        "umccr/RNAsum.data@15bb33cd7f5d241e09bddb8a8311e9638693c4c2:"
        "inst/extdata/ensembl/tx_gene_id_105.rds",
        "9ada63ff846d2bd21311899bbe408f0320455319751bef68b8307904f57d46dd",
    ),
}


def _cached_path(filename: str) -> Path:
    """Path of ``filename`` in ``xl.settings.datasetdir``; a clear error when it is missing."""
    from .._settings import settings

    folder = Path(settings.datasetdir)
    path = folder / filename
    if path.is_file():
        return path
    info = _FILES.get(filename)
    origin = (
        f" It holds {info.what}, from {info.source} (provenance and sha256: SOURCES.md of the "
        "scxl shared data folder)."
        if info is not None
        else ""
    )
    raise FileNotFoundError(
        f"data file {filename!r} was not found in the dataset folder {str(folder)!r}. Place the "
        "file there, or point scxl to the folder that holds it with "
        "xl.settings.datasetdir = '/path/to/folder' or the environment variable SCXL_DATASETDIR."
        f"{origin}"
    )


def _source(adata_or_uns, filename: str, loader: str, **extra: str) -> dict[str, str]:
    """The file's ``uns["source"]`` record, extended with file, checksum and what the loader did.

    ``sha256`` is the registered checksum of the file read: of the trimmed test copy when the
    file's own record says it is one (``"trimmed"``, kept in the record), else of the full file.
    """
    uns = adata_or_uns.uns if hasattr(adata_or_uns, "uns") else adata_or_uns
    record = {str(k): str(v) for k, v in dict(uns.get("source", {})).items()}
    info = _FILES[filename]
    sha256 = info.sha256
    if "trimmed" in record:
        sha256 = info.trimmed_sha256 or "unregistered (a trimmed copy)"
    record.setdefault("repo", info.source.split("@")[0])
    record.update(
        {
            "file": filename,
            "origin": info.source,
            "sha256": sha256,
            "loader": f"scxl.datasets.{loader}",
        }
    )
    record.update({k: str(v) for k, v in extra.items()})
    return record


def _read_h5ad(filename: str) -> AnnData:
    import anndata

    path = _cached_path(filename)
    logger.info("reading %s", path)
    return anndata.read_h5ad(path)


def _read_h5mu(filename: str) -> MuData:
    import mudata

    path = _cached_path(filename)
    logger.info("reading %s", path)
    try:  # adopt mudata >= 0.4 behaviour (no implicit pull of modality columns) when available
        ctx = mudata.set_options(pull_on_update=False)
    except (ValueError, KeyError, TypeError, AttributeError):  # pragma: no cover - other versions
        ctx = contextlib.nullcontext()
    with ctx:
        return mudata.read_h5mu(path)


def _as_category(frame: pd.DataFrame, column: str) -> None:
    if not isinstance(frame[column].dtype, pd.CategoricalDtype):
        frame[column] = frame[column].astype(str).astype("category")


def _log1p_scaled(counts, target: float):
    """``log1p(counts / rowsum * target)`` as a float32 CSR matrix."""
    counts = sparse.csr_matrix(counts, dtype=np.float32)
    total = np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel()
    scale = np.divide(target, total, out=np.zeros_like(total), where=total > 0)
    out = counts.copy()
    out.data = (out.data * np.repeat(scale, np.diff(out.indptr))).astype(np.float32)
    np.log1p(out.data, out=out.data)
    out.eliminate_zeros()
    return out


# --------------------------------------------------------------------------------------------
# bulk, multi-class
# --------------------------------------------------------------------------------------------


def tcga6(*, protein_coding_only: bool = False) -> AnnData:
    """TCGA primary tumours of 6 cancer types: 364 samples × 39,021 genes, with raw counts.

    RNA-seq read counts of all primary tumours (sample type ``01``) of the TCGA projects ACC
    (79), CHOL (36), DLBC (48), KICH (65), UCS (56) and UVM (80), from RNAsum's reference set
    (NCI GDC open-access data, HTSeq-style counts on unversioned Ensembl IDs mapped to Ensembl 105
    symbols; genes with the same symbol summed, all-zero genes dropped).

    Units: ``layers["counts"]`` are raw integer read counts; ``X`` is ``log1p`` of counts per
    million (CPM), the library size being the sum over the genes returned.

    Parameters
    ----------
    protein_coding_only
        Keep only the 19,076 genes with ``var["biotype"] == "protein_coding"`` (CPM is then
        computed over those genes). The stored biotype of 1,317 genes is that of their Locus
        Reference Genomic record (``LRG_gene``); it is replaced by their Ensembl gene's
        (from :func:`gene_annotation`), so TP53, BRCA1, EGFR and KRAS are kept.

    Returns
    -------
    AnnData (364 × 39,021, or 364 × 19,076) with

    ``X``
        Sparse CSR float32, ``log1p(CPM)``.
    ``layers["counts"]``
        Sparse CSR float32 raw read counts (integer values).
    ``obs["cancer_type"]``
        Categorical label: ACC, CHOL, DLBC, KICH, UCS, UVM.
    ``obs["tcga_barcode"]``, ``obs["patient"]``, ``obs["sample_type_code"]``
        Sample identifiers (one sample per patient).
    ``var["gene_ids"]``, ``var["biotype"]``
        ``;``-joined source Ensembl IDs and the Ensembl biotype (``LRG_gene`` records corrected,
        see ``protein_coding_only``).
    ``uns["source"]``
        Provenance (strings).

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.tcga6(protein_coding_only=True)
    >>> adata.shape
    (364, 19076)
    >>> adata.obs["cancer_type"].value_counts().sort_index().to_dict()
    {'ACC': 79, 'CHOL': 36, 'DLBC': 48, 'KICH': 65, 'UCS': 56, 'UVM': 80}
    """
    filename = "tcga_6types_counts.h5ad"
    adata = _read_h5ad(filename)
    repaired = _repair_lrg_biotypes(adata.var)
    if protein_coding_only:
        adata = adata[:, (adata.var["biotype"] == "protein_coding").to_numpy()].copy()
    counts = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.layers["counts"] = counts
    adata.X = _log1p_scaled(counts, 1e6)
    _as_category(adata.obs, "cancer_type")
    adata.uns["source"] = _source(
        adata,
        filename,
        "tcga6",
        X="log1p(CPM), library size over the genes returned",
        layers_counts="raw integer read counts",
        label="cancer_type",
        genes="protein-coding only" if protein_coding_only else "all",
        biotype=f"Ensembl 105 biotype; {repaired} genes stored as 'LRG_gene' (the Locus Reference Genomic "
                "record's) carry their Ensembl gene's biotype",
    )
    logger.info("loaded tcga6: %d samples × %d genes, label obs['cancer_type']", *adata.shape)
    return adata


def _repair_lrg_biotypes(var: pd.DataFrame) -> int:
    """Give genes stored with the biotype ``"LRG_gene"`` their Ensembl gene's biotype; returns how many.

    When the TCGA counts were mapped to symbols, 1,317 genes took the biotype of their Locus
    Reference Genomic record (``LRG_gene``) instead of their Ensembl gene's, among them TP53,
    BRCA1, EGFR, KRAS, MS4A1 and CD19, and ``protein_coding_only`` would leave them out. The
    biotype of the gene's Ensembl ID(s) is looked up in :func:`gene_annotation` (``protein_coding``
    if any of a symbol's IDs is protein-coding).
    """
    lrg = (var["biotype"].astype(str) == "LRG_gene").to_numpy()
    if not lrg.any():
        return 0
    try:
        by_id = gene_annotation().set_index("gene_id")["biotype"]
    except FileNotFoundError:
        warnings.warn(f"{int(lrg.sum())} genes have the biotype 'LRG_gene' and the Ensembl gene annotation "
                      "(ensembl105_gene_annotation.tsv.gz) to correct it is not in the dataset folder: "
                      "protein_coding_only=True leaves them out (TP53 among them)", ScxlWarning, stacklevel=3)
        return 0
    by_id = by_id[by_id != "LRG_gene"]

    def biotype(ids: str) -> str:
        found = [by_id[i] for i in ids.split(";") if i in by_id.index]
        return "protein_coding" if "protein_coding" in found else found[0] if found else "LRG_gene"

    new = var["biotype"].astype(str).to_numpy().copy()
    new[lrg] = [biotype(ids) for ids in var["gene_ids"].astype(str).to_numpy()[lrg]]
    var["biotype"] = pd.Categorical(new)
    return int((new[lrg] != "LRG_gene").sum())


def gtex26() -> AnnData:
    """GTEx: 26 human tissues × 20 samples each, 467 genes (the set shipped by SEPIRA).

    Samples from the GTEx portal (v6-era freeze of 8,555 samples), 20 per tissue. The genes are
    SEPIRA's transcription factors and targets around its lung-network example, so they lean
    towards lung; 68 of them are in the Lambert 2018 TF list. Entrez IDs were mapped to NCBI
    symbols (original IDs in ``var["entrez_id"]``).

    Units: "normalized" GTEx expression as shipped, values 0 to 12.8 (median 0.49, 21 % zeros).
    The scale looks like ``log2(RPKM + 1)``, but SEPIRA does not document the transform. Use the
    values as they are: they are already on a log-like scale.

    Returns
    -------
    AnnData (520 × 467) with

    ``X``
        Dense float32 expression (see Units).
    ``obs["tissue"]``
        Categorical label, 26 tissues (Adipose Tissue … Vagina), 20 samples each.
    ``var["entrez_id"]``
        NCBI Entrez gene ID.
    ``uns["source"]``
        Provenance (strings).

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.gtex26()
    >>> adata.shape
    (520, 467)
    >>> adata.obs["tissue"].cat.categories[:3].tolist()
    ['Adipose Tissue', 'Adrenal Gland', 'Blood']
    """
    filename = "gtex_26tissues_467genes_sepira.h5ad"
    adata = _read_h5ad(filename)
    _as_category(adata.obs, "tissue")
    adata.uns["source"] = _source(adata, filename, "gtex26", label="tissue")
    logger.info("loaded gtex26: %d samples × %d genes, label obs['tissue']", *adata.shape)
    return adata


def tissues7() -> AnnData:
    """Seven human tissues on Affymetrix HG-U133A microarrays: 189 samples × 500 genes.

    The ``tissue_gene_expression`` data of the *dslabs* R package (from
    ``genomicsclass/tissuesGeneExpression``, public GEO series): a random 500 of the probes that
    have a gene symbol, one probe per symbol.

    Units: log2 RMA intensities (about 4.2 to 14.1); there are no counts.

    Returns
    -------
    AnnData (189 × 500) with

    ``X``
        Dense float32 log2 RMA intensities.
    ``obs["tissue"]``
        Categorical label: cerebellum 38, colon 34, endometrium 15, hippocampus 31, kidney 39,
        liver 26, placenta 6.
    ``uns["source"]``
        Provenance (strings).

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.tissues7()
    >>> adata.shape
    (189, 500)
    >>> int(adata.obs["tissue"].value_counts()["kidney"])
    39
    """
    filename = "tissues_microarray_7tissues_dslabs.h5ad"
    adata = _read_h5ad(filename)
    _as_category(adata.obs, "tissue")
    adata.uns["source"] = _source(adata, filename, "tissues7", label="tissue")
    logger.info("loaded tissues7: %d samples × %d genes, label obs['tissue']", *adata.shape)
    return adata


# --------------------------------------------------------------------------------------------
# multimodal
# --------------------------------------------------------------------------------------------


def brca_multiomics() -> MuData:
    """TCGA breast cancer multi-omics (mixOmics ``breast.TCGA``): mRNA, miRNA and protein.

    220 primary breast tumours with their PAM50 subtype, as used by mixOmics/DIABLO
    (Singh et al. 2019). Protein (RPPA) exists for the 150 training samples only, so the
    modalities overlap partly.

    Units: normalised, filtered values as shipped: mRNA and miRNA on a log2-like scale, protein
    as RPPA values (can be negative). All matrices are dense float32.

    Returns
    -------
    MuData (220 samples) with

    ``mod["mrna"]``
        220 × 200 genes (symbols).
    ``mod["mirna"]``
        220 × 184 miRNAs.
    ``mod["protein"]``
        150 × 142 RPPA antibodies (training samples only).
    ``obs["subtype"]``
        Categorical PAM50 label: Basal 66, Her2 44, LumA 110. Also copied into each
        modality's ``obs``, so ``mdata["mrna"]`` can be used on its own.
    ``obs["split"]``
        Categorical: mixOmics' own ``train`` (150) / ``test`` (70) split; copied to the
        modalities as well.
    ``uns["source"]``
        Provenance (strings).

    Examples
    --------
    >>> import scxl as xl
    >>> mdata = xl.datasets.brca_multiomics()
    >>> list(mdata.mod)
    ['mrna', 'mirna', 'protein']
    >>> mdata.obs["subtype"].value_counts().sort_index().tolist()
    [66, 44, 110]
    >>> mdata["mrna"].obs["subtype"].dtype
    CategoricalDtype(categories=['Basal', 'Her2', 'LumA'], ordered=False, categories_dtype=object)
    """
    filename = "tcga_brca_multiomics_mixomics.h5mu"
    mdata = _read_h5mu(filename)
    missing = [c for c in ("subtype", "split") if c not in mdata.obs.columns]
    if missing:  # older conversions may keep the labels in the modalities only
        mdata.pull_obs(columns=missing, join_common=True)
    for column in ("subtype", "split"):
        _as_category(mdata.obs, column)
    mdata.push_obs(columns=["subtype", "split"])
    mdata.uns["source"] = _source(mdata, filename, "brca_multiomics", label="subtype")
    logger.info("loaded brca_multiomics: %d samples, modalities %s", mdata.n_obs, list(mdata.mod))
    return mdata


def eccite_pbmc() -> MuData:
    """ECCITE-seq PBMCs (control sample): 500 cells with RNA, surface-protein and hashtag counts.

    Mimitou et al. 2019 (*Nat Methods*, GEO GSE126310), the 500-cell example of CiteFuse,
    returned as it is stored. **No cell-type labels** ship with it: cluster or annotate the cells
    first (e.g. from the protein markers) before training a classifier.

    Units: raw UMI counts, sparse CSR float32, in every modality.

    15 protein names (e.g. CD4, CD19, CCR7) are also RNA gene names, so the MuData's global
    ``var_names`` are not unique (the warning mudata gives about this on reading is silenced
    here); work on one modality, or call ``mdata.var_names_make_unique()``.

    Returns
    -------
    MuData (500 cells) with

    ``mod["rna"]``
        500 × 19,521 hg19 genes; ``var["feature_id"]`` is the original ``hg19_`` name.
    ``mod["prot"]``
        500 × 49 antibody-derived tags (ADTs).
    ``mod["hto"]``
        500 × 4 cell hashtags.
    ``uns["source"]``
        Provenance (strings).

    Examples
    --------
    >>> import scxl as xl
    >>> mdata = xl.datasets.eccite_pbmc()
    >>> {k: v.shape for k, v in mdata.mod.items()}
    {'rna': (500, 19521), 'prot': (500, 49), 'hto': (500, 4)}
    """
    filename = "eccite_pbmc_500cells_citefuse.h5mu"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        mdata = _read_h5mu(filename)
    mdata.uns["source"] = _source(mdata, filename, "eccite_pbmc", label="none (unlabelled)")
    logger.info("loaded eccite_pbmc: %d cells, modalities %s", mdata.n_obs, list(mdata.mod))
    return mdata


# --------------------------------------------------------------------------------------------
# single cell
# --------------------------------------------------------------------------------------------


def pancreas() -> AnnData:
    """Mouse pancreatic endocrinogenesis at E15.5: 739 cells × 7,192 genes, 8 cell types.

    A 739-cell subset (from *veloviz*) of scVelo's pancreas data, Bastidas-Ponce et al. 2019
    (*Development*, GEO GSE132188); mouse gene symbols.

    Units: ``X`` is ``log1p`` of spliced UMI counts normalised to 10,000 per cell (as
    ``sc.pp.normalize_total(target_sum=1e4)`` then ``sc.pp.log1p``); ``layers["counts"]`` (and
    ``layers["spliced"]``) are the spliced UMI counts, ``layers["unspliced"]`` the unspliced ones.

    Returns
    -------
    AnnData (739 × 7,192) with

    ``X``
        Sparse CSR float32 log-normalised expression.
    ``layers["counts"]``, ``layers["spliced"]``, ``layers["unspliced"]``
        Sparse integer-valued UMI counts.
    ``obs["clusters"]``
        Categorical label: Ductal 181, Ngn3 low EP 54, Ngn3 high EP 129, Pre-endocrine 110,
        Beta 123, Alpha 99, Delta 16, Epsilon 27.
    ``obsm["X_pca"]``
        The 50 principal components that ship with the data.
    ``uns["source"]``
        Provenance (strings).

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.pancreas()
    >>> adata.shape
    (739, 7192)
    >>> list(adata.layers)
    ['spliced', 'unspliced', 'counts']
    """
    filename = "pancreas_mouse_739cells_veloviz.h5ad"
    adata = _read_h5ad(filename)
    counts = sparse.csr_matrix(adata.layers["spliced"], dtype=np.float32)
    adata.layers["counts"] = counts
    adata.X = _log1p_scaled(counts, 1e4)
    _as_category(adata.obs, "clusters")
    adata.uns["source"] = _source(
        adata,
        filename,
        "pancreas",
        X="log1p(normalize_total(spliced counts, 1e4))",
        layers_counts="spliced UMI counts",
        label="clusters",
    )
    logger.info("loaded pancreas: %d cells × %d genes, label obs['clusters']", *adata.shape)
    return adata


# --------------------------------------------------------------------------------------------
# reference profiles and gene lists
# --------------------------------------------------------------------------------------------

_PROFILES = {
    "consensus": "hpa_tissue_consensus_ntpm.h5ad",
    "v18": "tissueenrich_hpa_v18_tpm.h5ad",
}


def hpa_tissue_profiles(*, version: str = "consensus") -> AnnData:
    """Human Protein Atlas expression profiles: one observation per tissue (or blood cell type).

    Parameters
    ----------
    version
        ``"consensus"``: HPA consensus nTPM (HPA + GTEx, about HPA v20, 2021), 61 tissues and
        blood cell types × 19,366 genes. 17,753 values (2,236 genes, flagged in
        ``var["has_nan"]``, across 17 tissues with no value in the source) are **NaN**: fill or
        drop them before computing specificity scores.
        ``"v18"``: HPA v18 TPM per tissue as used by TissueEnrich, 35 tissues × 19,332 genes,
        no missing values; these match :func:`tissue_specific_genes`.

    Returns
    -------
    AnnData with

    ``X``
        Dense float32: nTPM (``"consensus"``) or TPM (``"v18"``), not log-transformed.
    ``obs["tissue"]``
        Categorical tissue name (one row per tissue).
    ``obs["n_samples"]``
        (``"v18"`` only) number of samples averaged per tissue.
    ``var["gene_ids"]``
        Ensembl gene ID.
    ``var["has_nan"]``
        (``"consensus"`` only) whether the gene has a missing value.
    ``uns["source"]``
        Provenance (strings). HPA data is CC BY-SA 3.0: attribute it.

    Examples
    --------
    >>> import scxl as xl
    >>> hpa = xl.datasets.hpa_tissue_profiles()
    >>> hpa.shape
    (61, 19366)
    >>> str(hpa.obs_names[hpa[:, "ALB"].X.ravel().argmax()])
    'liver'
    >>> xl.datasets.hpa_tissue_profiles(version="v18").shape
    (35, 19332)
    """
    check_in(version, list(_PROFILES), "version")
    filename = _PROFILES[version]
    adata = _read_h5ad(filename)
    _as_category(adata.obs, "tissue")
    units = "consensus nTPM" if version == "consensus" else "TPM"
    adata.uns["source"] = _source(
        adata, filename, "hpa_tissue_profiles", version=version, X=units, licence="CC BY-SA 3.0"
    )
    logger.info("loaded hpa_tissue_profiles(%s): %d tissues × %d genes", version, *adata.shape)
    return adata


def tissue_specific_genes() -> pd.DataFrame:
    """TissueEnrich's tissue-specific gene groups for HPA v18 (HPA definitions).

    Groups: Tissue-Enriched (2,613 rows), Group-Enriched (3,052), Tissue-Enhanced (5,797),
    Expressed-In-All (7,357), Mixed (3,353), Not-Expressed (1,165). A group-enriched or
    tissue-enhanced gene has one row per tissue; genes that are not specific to a tissue
    (Expressed-In-All, Mixed, Not-Expressed) have ``tissue == "All"``. Tissue names match
    ``hpa_tissue_profiles(version="v18").obs["tissue"]``.

    Returns
    -------
    DataFrame with 23,337 rows and columns

    ``dataset``
        ``"HPA_v18"``.
    ``gene_id``
        Ensembl gene ID.
    ``symbol``
        Gene symbol (missing, ``NaN``, for 321 rows whose ID has no acceptable symbol).
    ``tissue``
        The tissue, or ``"All"``.
    ``group``
        Categorical HPA group (see above).

    Examples
    --------
    >>> import scxl as xl
    >>> df = xl.datasets.tissue_specific_genes()
    >>> df.shape
    (23337, 5)
    >>> df.loc[df["symbol"] == "ALB", ["tissue", "group"]].to_numpy().tolist()
    [['Liver', 'Tissue-Enriched']]
    """
    filename = "tissue_specific_genes_hpa_v18_tissueenrich.tsv.gz"
    path = _cached_path(filename)
    logger.info("reading %s", path)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values={"symbol": [""]})
    df["tissue"] = df["tissue"].replace("", "All")
    groups = [
        "Tissue-Enriched",
        "Group-Enriched",
        "Tissue-Enhanced",
        "Expressed-In-All",
        "Mixed",
        "Not-Expressed",
    ]
    extra = sorted(set(df["group"]) - set(groups))
    df["group"] = pd.Categorical(df["group"], categories=[*groups, *extra])
    return df


def housekeeping_genes() -> list[str]:
    """Human housekeeping genes of Eisenberg & Levanon 2013 (*Trends Genet* 29:569).

    3,804 gene symbols from the original ``HK_genes.txt`` (symbol and RefSeq accession per line;
    only the symbol is returned, trailing spaces removed). It includes the paper's 11 most stable
    genes (C1orf43, CHMP2A, EMC7, GPI, PSMB2, PSMB4, RAB7A, REEP5, SNRPD3, VCP, VPS29) but, as
    in the original, not GAPDH or ACTB.

    Returns
    -------
    Gene symbols in file order (unique).

    Examples
    --------
    >>> import scxl as xl
    >>> hk = xl.datasets.housekeeping_genes()
    >>> len(hk), hk[:3]
    (3804, ['AAAS', 'AAGAB', 'AAMP'])
    """
    path = _cached_path("housekeeping_eisenberg2013_HK_genes.txt")
    with open(path, encoding="utf-8") as fh:
        symbols = [line.split("\t", 1)[0].strip() for line in fh]
    return list(dict.fromkeys(s for s in symbols if s))


_TF_FILES = {"lambert2018": "tf_lambert2018.txt", "pyscenic": "tf_pyscenic_hs_hgnc_tfs.txt"}


def transcription_factors(*, source: str = "lambert2018") -> list[str]:
    """Human transcription factors (gene symbols).

    Parameters
    ----------
    source
        ``"lambert2018"``: the 1,639 TFs of Lambert et al. 2018 (*Cell* 172:650, ``TF_names
        v1.01``); ``"pyscenic"``: pySCENIC's 1,839 ``hs_hgnc_tfs``.

    Returns
    -------
    Gene symbols in file order (unique).

    Examples
    --------
    >>> import scxl as xl
    >>> len(xl.datasets.transcription_factors())
    1639
    >>> len(xl.datasets.transcription_factors(source="pyscenic"))
    1839
    """
    check_in(source, list(_TF_FILES), "source")
    path = _cached_path(_TF_FILES[source])
    with open(path, encoding="utf-8") as fh:
        symbols = [line.strip() for line in fh]
    return list(dict.fromkeys(s for s in symbols if s))


def gene_annotation() -> pd.DataFrame:
    """Ensembl 105 human gene annotation, for genomic gene order (e.g. CNN inputs).

    69,329 records, de-duplicated to one row per gene ID from RNAsum's ``tx_gene_id_105.rds``;
    coordinates are GRCh38, 1-based, as in Ensembl. Besides the 61,487 Ensembl genes on the
    primary assembly (chromosomes 1–22, X, Y, MT), the table holds genes on alternative
    haplotype and patch scaffolds (``chrom`` such as ``"CHR_HSCHR6_MHC_COX_CTG1"``) and 1,324
    Locus Reference Genomic records (``gene_id`` ``"LRG_…"``, biotype ``"LRG_gene"``), so a
    symbol can occur more than once. For a genomic gene order, keep the ``ENSG`` IDs on the
    primary chromosomes (see the example).

    Returns
    -------
    DataFrame with one row per gene and columns

    ``gene_id``
        Unversioned Ensembl gene ID or LRG ID (unique).
    ``symbol``
        Gene name; missing (``NaN``) for 22,284 unnamed genes.
    ``chrom``
        Chromosome or scaffold name as a string (``"1"`` … ``"22"``, ``"X"``, ``"Y"``, ``"MT"``,
        scaffolds).
    ``start``, ``end``
        Gene start and end (int64).
    ``biotype``
        Ensembl biotype (e.g. ``"protein_coding"``).

    Examples
    --------
    >>> import scxl as xl
    >>> ann = xl.datasets.gene_annotation()
    >>> ann.columns.tolist()
    ['gene_id', 'symbol', 'chrom', 'start', 'end', 'biotype']
    >>> primary = [str(c) for c in range(1, 23)] + ["X", "Y", "MT"]
    >>> ann = ann[ann["chrom"].isin(primary) & ann["gene_id"].str.startswith("ENSG")]
    >>> len(ann)
    61487
    >>> ann.loc[ann["symbol"] == "TP53", ["chrom", "start", "end"]].to_numpy().tolist()
    [['17', 7661779, 7687538]]
    """
    path = _cached_path("ensembl105_gene_annotation.tsv.gz")
    logger.info("reading %s", path)
    df = pd.read_csv(
        path,
        sep="\t",
        dtype={"gene_id": str, "symbol": str, "biotype": str, "chrom": str},
        keep_default_na=False,
        na_values={"symbol": [""]},
    )
    df["start"] = df["start"].astype(np.int64)
    df["end"] = df["end"].astype(np.int64)
    return df[["gene_id", "symbol", "chrom", "start", "end", "biotype"]]
