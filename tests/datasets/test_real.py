import contextlib
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scxl as xl
from scxl.datasets import _real


def _group_means(adata, gene, label):
    x = adata[:, gene].X
    x = x.toarray().ravel() if sparse.issparse(x) else np.asarray(x).ravel()
    return pd.Series(x).groupby(adata.obs[label].to_numpy(), observed=True).mean()


def _top_group(adata, gene, label):
    return _group_means(adata, gene, label).idxmax()


# The real data sets are read from the copies in tests/data (tests/conftest.py). Four of them are
# trimmed to fewer genes (tests/data/README.md); the tests of those run on the trimmed copies
# ("trimmed") and, where the full data folder is present, on the full files too ("full"). Only
# the dimensions differ: the trimmed copies cannot have the full files' numbers of genes.
DIMS = {
    "full": {
        "tcga6": (364, 39021),
        "tcga6_protein_coding": (364, 19076),
        "pancreas": (739, 7192),
        "hpa_consensus": (61, 19366),
        "eccite_rna": (500, 19521),
    },
    "trimmed": {
        "tcga6": (364, 2500),
        "tcga6_protein_coding": (364, 2345),
        "pancreas": (739, 500),
        "hpa_consensus": (61, 3000),
        "eccite_rna": (500, 500),
    },
}
TRIMMED = sorted(name for name, info in _real._FILES.items() if info.trimmed_sha256)
TEST_DATA_FILES = {"README.md", "make_test_data.py", ".gitignore"}  # besides the data files


@contextlib.contextmanager
def _datasetdir(folder):
    old = xl.settings.datasetdir
    xl.settings.datasetdir = folder
    try:
        yield
    finally:
        xl.settings.datasetdir = old


@pytest.fixture(scope="module", params=["trimmed", pytest.param("full", marks=pytest.mark.full_data)])
def kind(request):
    """Which copy of the real data a test reads: ``tests/data`` or the full data folder."""
    if request.param == "full":
        request.getfixturevalue("full_data_dir")  # skips when the full folder is absent
    return request.param


@pytest.fixture(scope="module")
def folder(kind, request):
    if kind == "full":
        return request.getfixturevalue("full_data_dir")
    return xl.settings.datasetdir


@pytest.fixture
def reading(folder):
    """``xl.settings.datasetdir`` set to the folder of ``kind`` for one test."""
    with _datasetdir(folder):
        yield folder


@pytest.fixture(scope="module")
def tcga(folder):
    with _datasetdir(folder):
        return xl.datasets.tcga6()


def _sha256_of(kind, filename):
    info = _real._FILES[filename]
    return info.trimmed_sha256 if kind == "trimmed" else info.sha256


def _check_trimmed_record(kind, src, filename):
    if kind == "trimmed":  # the copy says that it is one, and of which file
        assert "genes only" in src["trimmed"]
        assert src["trimmed_from"] == f"{filename} sha256 {_real._FILES[filename].sha256}"
    else:
        assert "trimmed" not in src


# ---------------------------------------------------------------------------------------------
# the cache folder and its error message
# ---------------------------------------------------------------------------------------------

LOADERS = [
    (xl.datasets.tcga6, {}, "tcga_6types_counts.h5ad"),
    (xl.datasets.gtex26, {}, "gtex_26tissues_467genes_sepira.h5ad"),
    (xl.datasets.tissues7, {}, "tissues_microarray_7tissues_dslabs.h5ad"),
    (xl.datasets.brca_multiomics, {}, "tcga_brca_multiomics_mixomics.h5mu"),
    (xl.datasets.eccite_pbmc, {}, "eccite_pbmc_500cells_citefuse.h5mu"),
    (xl.datasets.pancreas, {}, "pancreas_mouse_739cells_veloviz.h5ad"),
    (xl.datasets.hpa_tissue_profiles, {}, "hpa_tissue_consensus_ntpm.h5ad"),
    (xl.datasets.hpa_tissue_profiles, {"version": "v18"}, "tissueenrich_hpa_v18_tpm.h5ad"),
    (xl.datasets.tissue_specific_genes, {}, "tissue_specific_genes_hpa_v18_tissueenrich.tsv.gz"),
    (xl.datasets.housekeeping_genes, {}, "housekeeping_eisenberg2013_HK_genes.txt"),
    (xl.datasets.transcription_factors, {}, "tf_lambert2018.txt"),
    (xl.datasets.transcription_factors, {"source": "pyscenic"}, "tf_pyscenic_hs_hgnc_tfs.txt"),
    (xl.datasets.gene_annotation, {}, "ensembl105_gene_annotation.tsv.gz"),
]


@pytest.mark.parametrize(("loader", "kwargs", "filename"), LOADERS)
def test_missing_file_message(loader, kwargs, filename, tmp_path, monkeypatch):
    monkeypatch.setattr(xl.settings, "datasetdir", tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        loader(**kwargs)
    msg = str(err.value)
    assert repr(filename) in msg
    assert str(tmp_path) in msg
    assert "xl.settings.datasetdir" in msg and "SCXL_DATASETDIR" in msg
    assert _real._FILES[filename].source.split("@")[0] in msg  # where the data comes from


def test_settings_restored_after_monkeypatch():
    # the missing-file tests above must not leak their temporary folder
    assert (xl.settings.datasetdir / "tcga_6types_counts.h5ad").is_file()
    assert xl.settings.datasetdir == Path(__file__).resolve().parents[1] / "data"


def test_cached_path_unknown_file(tmp_path, monkeypatch):
    monkeypatch.setattr(xl.settings, "datasetdir", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'nope.h5ad' was not found in the dataset folder"):
        _real._cached_path("nope.h5ad")
    (tmp_path / "nope.h5ad").write_text("x")
    assert _real._cached_path("nope.h5ad") == tmp_path / "nope.h5ad"


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_covers_shipped_files_and_checksums_match():
    # tests/data: the full file where no trimmed copy is registered, else the trimmed copy
    folder = xl.settings.datasetdir
    on_disk = {p.name for p in folder.iterdir() if p.is_file()} - TEST_DATA_FILES
    assert on_disk == set(_real._FILES)
    assert TRIMMED == [
        "eccite_pbmc_500cells_citefuse.h5mu",
        "hpa_tissue_consensus_ntpm.h5ad",
        "pancreas_mouse_739cells_veloviz.h5ad",
        "tcga_6types_counts.h5ad",
    ]
    for name, info in _real._FILES.items():
        assert _sha256(folder / name) == (info.trimmed_sha256 or info.sha256), name
    assert sum((folder / name).stat().st_size for name in on_disk) < 12e6  # small enough for git


def test_shipped_files_documented():
    readme = (xl.settings.datasetdir / "README.md").read_text(encoding="utf-8")
    for name, info in _real._FILES.items():
        assert f"`{name}`" in readme, name
        assert info.sha256 in readme, name
        if info.trimmed_sha256:
            assert info.trimmed_sha256 in readme, name


def test_full_files_checksums_match(full_data_dir):
    on_disk = {p.name for p in full_data_dir.iterdir() if p.name != "SOURCES.md"}
    assert set(_real._FILES) <= on_disk
    for name, info in _real._FILES.items():
        assert _sha256(full_data_dir / name) == info.sha256, name


@pytest.mark.parametrize("filename", TRIMMED)
def test_trimmed_copies_are_subsets_of_full_files(filename, full_data_dir):
    """Every value of a trimmed copy is the full file's, for all observations and fewer genes."""
    import anndata
    import mudata

    def read(path):
        if filename.endswith(".h5mu"):
            with warnings.catch_warnings():  # mudata's notes on the shared var_names: not tested here
                warnings.simplefilter("ignore")
                m = mudata.read_h5mu(path)
            return dict(m.mod)
        return {"": anndata.read_h5ad(path)}

    small, full = read(xl.settings.datasetdir / filename), read(full_data_dir / filename)
    assert list(small) == list(full)
    for key, a in small.items():
        b = full[key]
        assert a.var_names.isin(b.var_names).all() and a.var_names.is_unique
        b = b[:, a.var_names].copy()
        assert a.n_vars <= b.n_vars and a.obs_names.equals(b.obs_names)
        pd.testing.assert_frame_equal(a.obs, b.obs)
        pd.testing.assert_frame_equal(a.var, b.var)
        for name in ["X", *b.layers]:
            x, y = (a.X, b.X) if name == "X" else (a.layers[name], b.layers[name])
            x = x.toarray() if sparse.issparse(x) else np.asarray(x)
            y = y.toarray() if sparse.issparse(y) else np.asarray(y)
            np.testing.assert_array_equal(x, y, err_msg=f"{filename} {key} {name}")
        assert list(a.layers) == list(b.layers) and list(a.obsm) == list(b.obsm)
        for name in b.obsm:
            np.testing.assert_array_equal(a.obsm[name], b.obsm[name])


def test_bad_options():
    with pytest.raises(
        ValueError, match=r"version='v20' is not valid; choose one of \['consensus', 'v18'\]"
    ):
        xl.datasets.hpa_tissue_profiles(version="v20")
    with pytest.raises(ValueError, match=r"source='jaspar' is not valid"):
        xl.datasets.transcription_factors(source="jaspar")
    with pytest.raises(TypeError):
        xl.datasets.tcga6(True)  # keyword-only


def test_loaders_are_lazy_and_light():
    import subprocess
    import sys

    code = (
        "import sys, scxl.datasets as d; "
        "bad = [m for m in ('scanpy', 'matplotlib', 'mudata', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# bulk
# ---------------------------------------------------------------------------------------------


def test_tcga6(tcga, kind):
    a = tcga
    assert a.shape == DIMS[kind]["tcga6"]
    assert sparse.issparse(a.X) and a.X.format == "csr" and a.X.dtype == np.float32
    counts = a.layers["counts"]
    assert sparse.issparse(counts) and counts.dtype == np.float32
    assert np.array_equal(counts.data, np.round(counts.data)) and counts.data.min() >= 0
    np.testing.assert_allclose(np.expm1(a.X[:5].toarray()).sum(1), 1e6, rtol=1e-3)
    lab = a.obs["cancer_type"]
    assert isinstance(lab.dtype, pd.CategoricalDtype)
    assert lab.value_counts().sort_index().to_dict() == {
        "ACC": 79, "CHOL": 36, "DLBC": 48, "KICH": 65, "UCS": 56, "UVM": 80
    }  # fmt: skip
    src = a.uns["source"]
    assert src["repo"] == "umccr/RNAsum.data" and src["loader"] == "scxl.datasets.tcga6"
    assert src["sha256"] == _sha256_of(kind, "tcga_6types_counts.h5ad")
    _check_trimmed_record(kind, src, "tcga_6types_counts.h5ad")
    assert all(isinstance(v, str) for v in src.values())


@pytest.mark.parametrize(
    ("gene", "cancer_type"),
    [("MS4A1", "DLBC"), ("CD19", "DLBC"), ("STAR", "ACC"), ("CYP11B1", "ACC"), ("PMEL", "UVM"),
     ("MLANA", "UVM"), ("FOXI1", "KICH"), ("ALB", "CHOL")],
)  # fmt: skip
def test_tcga6_spot_checks(tcga, gene, cancer_type):
    assert _top_group(tcga, gene, "cancer_type") == cancer_type


def test_tcga6_protein_coding_only(tcga, kind, reading):
    pc = xl.datasets.tcga6(protein_coding_only=True)
    assert pc.shape == DIMS[kind]["tcga6_protein_coding"]
    assert (pc.var["biotype"] == "protein_coding").all()
    np.testing.assert_allclose(np.expm1(pc.X[:5].toarray()).sum(1), 1e6, rtol=1e-3)
    # counts are the same numbers as in the full table
    genes = pc.var_names[:50]
    np.testing.assert_array_equal(
        pc[:, genes].layers["counts"].toarray(), tcga[:, genes].layers["counts"].toarray()
    )
    assert pc.uns["source"]["genes"] == "protein-coding only"
    # stored as 'LRG_gene' (their Locus Reference Genomic record's biotype), protein-coding by their Ensembl gene
    assert {"MS4A1", "CD19", "EGFR"} <= set(pc.var_names)
    assert "LRG_gene" not in set(tcga.var["biotype"])


def test_tcga6_biotypes_without_the_annotation(monkeypatch):
    from scxl.datasets import _real

    def missing():
        raise FileNotFoundError("ensembl105_gene_annotation.tsv.gz")

    monkeypatch.setattr(_real, "gene_annotation", missing)
    with pytest.warns(UserWarning, match="LRG_gene.*TP53"):
        pc = xl.datasets.tcga6(protein_coding_only=True)
    assert "MS4A1" not in pc.var_names


def test_gtex26():
    a = xl.datasets.gtex26()
    assert a.shape == (520, 467)
    assert isinstance(a.X, np.ndarray) and a.X.dtype == np.float32
    lab = a.obs["tissue"]
    assert isinstance(lab.dtype, pd.CategoricalDtype)
    assert lab.cat.categories.size == 26 and (lab.value_counts() == 20).all()
    assert 0 <= a.X.min() and a.X.max() < 13
    assert _top_group(a, "HNF1A", "tissue") == "Liver"
    assert _top_group(a, "FOXA2", "tissue") == "Liver"
    assert _group_means(a, "NKX2-1", "tissue").nlargest(2).index.tolist() == ["Thyroid", "Lung"]
    assert a.uns["source"]["repo"] == "YC3/SEPIRA"


def test_tissues7():
    a = xl.datasets.tissues7()
    assert a.shape == (189, 500)
    assert a.X.dtype == np.float32 and 4 < a.X.min() and a.X.max() < 14.5
    lab = a.obs["tissue"]
    assert isinstance(lab.dtype, pd.CategoricalDtype)
    assert lab.value_counts().sort_index().tolist() == [38, 34, 15, 31, 39, 26, 6]
    assert _top_group(a, "HAMP", "tissue") == "liver"
    assert _top_group(a, "GPA33", "tissue") == "colon"
    assert _top_group(a, "REN", "tissue") == "kidney"


# ---------------------------------------------------------------------------------------------
# multimodal and single cell
# ---------------------------------------------------------------------------------------------


def test_brca_multiomics_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = xl.datasets.brca_multiomics()
    assert list(m.mod) == ["mrna", "mirna", "protein"]
    assert m.n_obs == 220
    assert {k: v.shape for k, v in m.mod.items()} == {
        "mrna": (220, 200), "mirna": (220, 184), "protein": (150, 142)
    }  # fmt: skip
    for frame in (m.obs, *(mod.obs for mod in m.mod.values())):
        assert isinstance(frame["subtype"].dtype, pd.CategoricalDtype)
        assert isinstance(frame["split"].dtype, pd.CategoricalDtype)
    assert m.obs["subtype"].value_counts().to_dict() == {"LumA": 110, "Basal": 66, "Her2": 44}
    assert m.obs["split"].value_counts().to_dict() == {"train": 150, "test": 70}
    assert (m["protein"].obs["split"] == "train").all()
    assert (m["mrna"].obs["subtype"] == m.obs.loc[m["mrna"].obs_names, "subtype"]).all()
    assert m.uns["source"]["repo"] == "mixOmicsTeam/mixOmics"


def test_eccite_pbmc(kind, reading):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = xl.datasets.eccite_pbmc()
    assert {k: v.shape for k, v in m.mod.items()} == {
        "rna": DIMS[kind]["eccite_rna"], "prot": (500, 49), "hto": (500, 4)
    }  # fmt: skip
    for mod in m.mod.values():
        assert sparse.issparse(mod.X)
        assert np.array_equal(mod.X.data, np.round(mod.X.data))  # raw UMI counts
        assert mod.var_names.is_unique
    assert m.obs.shape[1] == 0  # no labels ship with it
    assert "CD4" in m["rna"].var_names and "CD4" in m["prot"].var_names
    assert m["rna"].var.loc["CD4", "feature_id"] == "hg19_CD4"
    assert m.uns["source"]["sha256"] == _sha256_of(kind, "eccite_pbmc_500cells_citefuse.h5mu")
    _check_trimmed_record(kind, m.uns["source"], "eccite_pbmc_500cells_citefuse.h5mu")


def test_pancreas(kind, reading):
    a = xl.datasets.pancreas()
    assert a.shape == DIMS[kind]["pancreas"]
    assert sparse.issparse(a.X) and a.X.dtype == np.float32
    np.testing.assert_allclose(np.expm1(a.X.toarray()).sum(1), 1e4, rtol=1e-3)
    counts = a.layers["counts"]
    assert (counts != a.layers["spliced"]).nnz == 0
    assert np.array_equal(counts.data, np.round(counts.data))
    assert {"spliced", "unspliced", "counts"} <= set(a.layers)
    assert a.obsm["X_pca"].shape == (739, 50)
    lab = a.obs["clusters"]
    assert isinstance(lab.dtype, pd.CategoricalDtype)
    assert lab.value_counts()[["Ductal", "Beta", "Delta"]].tolist() == [181, 123, 16]
    for gene, cluster in [
        ("Ins2", "Beta"),
        ("Gcg", "Alpha"),
        ("Ghrl", "Epsilon"),
        ("Krt19", "Ductal"),
    ]:
        assert _top_group(a, gene, "clusters") == cluster
    _check_trimmed_record(kind, a.uns["source"], "pancreas_mouse_739cells_veloviz.h5ad")


# ---------------------------------------------------------------------------------------------
# reference profiles and lists
# ---------------------------------------------------------------------------------------------


def test_hpa_tissue_profiles(kind, reading):
    hpa = xl.datasets.hpa_tissue_profiles()
    assert hpa.shape == DIMS[kind]["hpa_consensus"]
    assert isinstance(hpa.obs["tissue"].dtype, pd.CategoricalDtype)
    nan = np.isnan(hpa.X)
    assert nan.sum() == 17753
    assert (nan.any(0) == hpa.var["has_nan"].to_numpy()).all()
    assert hpa.obs["tissue"].iloc[int(np.nanargmax(hpa[:, "ALB"].X))] == "liver"
    _check_trimmed_record(kind, hpa.uns["source"], "hpa_tissue_consensus_ntpm.h5ad")
    v18 = xl.datasets.hpa_tissue_profiles(version="v18")
    assert v18.shape == (35, 19332) and not np.isnan(v18.X).any()
    for gene, tissue in [("INS", "Pancreas"), ("UMOD", "Kidney"), ("SFTPC", "Lung")]:
        assert v18.obs["tissue"].iloc[int(np.argmax(v18[:, gene].X))] == tissue
    assert v18.uns["source"]["version"] == "v18"


def test_tissue_specific_genes():
    df = xl.datasets.tissue_specific_genes()
    assert df.shape == (23337, 5)
    assert df.columns.tolist() == ["dataset", "gene_id", "symbol", "tissue", "group"]
    assert df["group"].value_counts().to_dict() == {
        "Expressed-In-All": 7357, "Tissue-Enhanced": 5797, "Mixed": 3353,
        "Group-Enriched": 3052, "Tissue-Enriched": 2613, "Not-Expressed": 1165,
    }  # fmt: skip
    unspecific = df["group"].isin(["Expressed-In-All", "Mixed", "Not-Expressed"])
    assert (df.loc[unspecific, "tissue"] == "All").all()
    assert not df["tissue"].isna().any() and (df["tissue"] != "").all()
    assert df["symbol"].isna().sum() == 321
    tissues = set(xl.datasets.hpa_tissue_profiles(version="v18").obs["tissue"])
    assert set(df["tissue"]) - {"All"} <= tissues
    assert df.loc[df["symbol"] == "INS", "tissue"].tolist() == ["Pancreas"]


def test_gene_lists():
    hk = xl.datasets.housekeeping_genes()
    assert len(hk) == 3804 and len(set(hk)) == 3804
    assert all(g == g.strip() and g for g in hk)
    stable = ["C1orf43", "CHMP2A", "EMC7", "GPI", "PSMB2", "PSMB4", "RAB7A", "REEP5", "SNRPD3", "VCP", "VPS29"]  # fmt: skip
    assert set(stable) <= set(hk)
    assert "GAPDH" not in hk and "ACTB" not in hk
    lambert = xl.datasets.transcription_factors()
    scenic = xl.datasets.transcription_factors(source="pyscenic")
    assert (len(lambert), len(scenic)) == (1639, 1839)
    assert {"TFAP2A", "FOXA2", "HNF1A", "NKX2-1"} <= set(lambert)
    assert all(g == g.strip() and g for g in lambert + scenic)


def test_gene_annotation():
    ann = xl.datasets.gene_annotation()
    assert ann.shape == (69329, 6)
    assert ann.columns.tolist() == ["gene_id", "symbol", "chrom", "start", "end", "biotype"]
    assert ann["gene_id"].is_unique
    assert ann["start"].dtype == np.int64 and ann["end"].dtype == np.int64
    assert (ann["end"] >= ann["start"]).all()
    assert ann["symbol"].isna().sum() == 22284
    assert pd.api.types.is_string_dtype(ann["chrom"]) or ann["chrom"].dtype == object
    alb = ann.loc[ann["symbol"] == "ALB"].iloc[0]
    assert (alb["gene_id"], alb["chrom"], alb["biotype"]) == (
        "ENSG00000163631",
        "4",
        "protein_coding",
    )


def test_results_are_fresh_objects():
    a = xl.datasets.gtex26()
    a.X[:] = -1
    a.obs["tissue"] = "x"
    b = xl.datasets.gtex26()
    assert b.X.min() >= 0 and b.obs["tissue"].nunique() == 26
    hk = xl.datasets.housekeeping_genes()
    hk.clear()
    assert len(xl.datasets.housekeeping_genes()) == 3804
