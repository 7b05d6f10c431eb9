from __future__ import annotations

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import scxl as xl

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def pbmc_trained():
    a = xl.datasets.pbmc68k()
    xl.tl.train_classifier(a, "cell_type", n_models=5, max_epochs=40, random_state=0)
    return a


def test_attribute_writes_rank_genes_groups_format(trained):
    a = trained.copy()
    xl.tl.attribute(a, method="deeplift", baseline="universal", rank_by="total")
    layer = a.layers["xl_deeplift"]
    assert layer.shape == a.shape and layer.dtype == np.float32
    u = a.uns["xl_deeplift"]
    assert u["names"].dtype.names == ("group_0", "group_1", "group_2")
    for f in ("scores", "scores_std", "logfoldchanges", "pvals", "pvals_adj", "topk_fraction"):
        assert u[f].dtype.names == u["names"].dtype.names and len(u[f]) == a.n_vars
    assert np.all(np.diff(u["scores"]["group_0"]) <= 0)
    # group score = mean over the group's cells of the layer
    cells = (a.obs["group"] == "group_1").to_numpy()
    top = u["names"]["group_1"][0]
    assert u["scores"]["group_1"][0] == pytest.approx(layer[cells, a.var_names.get_loc(top)].mean(), rel=1e-4)
    df = sc.get.rank_genes_groups_df(a, "group_0", key="xl_deeplift")
    assert list(df.columns[:2]) == ["names", "scores"] and len(df) == a.n_vars


def test_planted_markers_rank_first(trained):
    a = trained.copy()
    xl.tl.attribute(a, method="integrated_gradients")  # defaults: the mean reference, rank_by="up"
    var = a.var
    for g in ("group_0", "group_1", "group_2"):
        top = xl.get.top_genes(a, "xl_integrated_gradients", group=g, n=5)
        own_up = var.index[(var["marker_of"].astype(str) == g) & (var["marker_direction"] == "up")]
        assert top["gene"].isin(own_up).all(), (g, top["gene"].tolist())
        down = xl.get.top_genes(a, "xl_integrated_gradients", group=g, n=3, direction="down")
        assert (down["logfoldchanges"] < 0).all()
    # the paper's setting: the whole contribution against "universal" references
    xl.tl.attribute(a, method="integrated_gradients", baseline="universal", rank_by="total")
    markers = var.index[var["role"].astype(str).str.startswith("marker")]
    for g in ("group_0", "group_1", "group_2"):
        top = xl.get.top_genes(a, "xl_integrated_gradients", group=g, n=10)
        # the classifier tells groups apart with planted markers (its own, or other groups' absent)
        assert top["gene"].isin(markers).all(), (g, top["gene"].tolist())
        own = var.index[var["marker_of"].astype(str) == g]
        assert top["gene"].head(3).isin(own).any()


def test_scanpy_plots_work_on_the_key(pbmc_trained):
    a = pbmc_trained.copy()
    xl.tl.attribute(a, method="deeplift", baseline="universal")
    for plot in ("rank_genes_groups_dotplot", "rank_genes_groups_heatmap", "rank_genes_groups_matrixplot",
                 "rank_genes_groups_stacked_violin"):
        getattr(sc.pl, plot)(a, key="xl_deeplift", n_genes=2, show=False)
        matplotlib.pyplot.close("all")


def test_known_pbmc_markers(pbmc_trained):
    a = pbmc_trained.copy()
    xl.tl.attribute(a, method="deeplift", baseline="universal")
    b = xl.get.top_genes(a, "xl_deeplift", group="CD19+ B", n=10)["gene"].tolist()
    nk = xl.get.top_genes(a, "xl_deeplift", group="CD56+ NK", n=15)["gene"].tolist()
    assert {"CD79A", "MS4A1"} & set(b), b
    assert {"NKG7", "GNLY"} & set(nk), nk


def test_independent_pbmc_runs_agree():
    """Issue acceptance: two independent runs (train + attribute, different seeds, 10 models each)
    agree at group level (DeepLift, universal references) with Spearman >= 0.9."""
    runs = []
    for seed in (1, 2):
        a = xl.datasets.pbmc68k()
        xl.tl.train_classifier(a, "cell_type", random_state=seed)
        xl.tl.attribute(a, method="deeplift", baseline="universal", random_state=seed, store_layer=False)
        runs.append(a)
    rho = {}
    for g in runs[0].obs["cell_type"].cat.categories:
        s = [xl.get.top_genes(r, "xl_deeplift", group=g).set_index("gene")["scores"] for r in runs]
        assert len(s[0]) == len(s[1]) == runs[0].n_vars
        rho[g] = s[0].corr(s[1].reindex(s[0].index), method="spearman")
    rho = pd.Series(rho)
    assert rho.median() >= 0.9 and rho.min() >= 0.85, rho.round(3).to_dict()


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "guided_backprop", "integrated_gradients",
                                    "deeplift", "deeplift_shap", "feature_ablation"])
def test_every_mlp_method_runs(trained, method):
    a = trained[:60].copy()
    xl.tl.attribute(a, method=method, n_baselines=3 if method == "deeplift_shap" else None)
    assert np.isfinite(a.layers[f"xl_{method}"]).all()
    assert a.uns[f"xl_{method}"]["params"]["explainer"] == method


def test_cnn_methods(synth):
    a = synth[:80].copy()
    xl.tl.train_classifier(a, "group", model="cnn", model_kwargs={"channels": (4, 8, 8)}, n_models=2, max_epochs=2)
    for method in ("guided_gradcam", "guided_gradcam_pp", "deeplift"):
        xl.tl.attribute(a, method=method)
        assert a.layers[f"xl_{method}"].shape == a.shape


def test_targets_and_options(trained):
    a = trained[:90].copy()
    xl.tl.attribute(a, method="saliency", target="group_2", key_added="sal_g2", store_layer=False)
    assert "sal_g2" not in a.layers and "sal_g2" in a.uns
    xl.tl.attribute(a, method="saliency", target="prediction", layer_dtype="float16", models=[0, 2])
    assert a.layers["xl_saliency"].dtype == np.float16
    assert a.uns["xl_saliency"]["params"]["n_models"] == 2
    xl.tl.attribute(a, method="deeplift", baseline=np.zeros((2, a.n_vars), dtype=np.float32), key_added="dl_arr")
    xl.tl.attribute(a, method="deeplift", baseline="zero", key_added="dl_zero")
    np.testing.assert_allclose(a.layers["dl_arr"], a.layers["dl_zero"], rtol=1e-5, atol=1e-6)
    xl.tl.attribute(a, method="deeplift", baseline="rest", n_baselines=2, aggregate="median", smoothgrad=(2, 0.1))


def test_deterministic_and_seeded(trained):
    a = trained[:60].copy()
    xl.tl.attribute(a, method="deeplift_shap", n_baselines=4, random_state=3, key_added="r1")
    xl.tl.attribute(a, method="deeplift_shap", n_baselines=4, random_state=3, key_added="r2")
    xl.tl.attribute(a, method="deeplift_shap", n_baselines=4, random_state=4, key_added="r3")
    np.testing.assert_array_equal(a.layers["r1"], a.layers["r2"])
    assert not np.array_equal(a.layers["r1"], a.layers["r3"])


def test_missing_genes_get_zero(trained):
    a = trained.copy()
    q = ad.AnnData(a.X[:, 3:], obs=a.obs[["group"]].copy(), var=pd.DataFrame(index=a.var_names[3:]))
    xl.tl.attribute(q, method="saliency", ensemble=xl.get.ensemble(a))
    assert q.layers["xl_saliency"].shape == q.shape
    assert len(q.uns["xl_saliency"]["names"]) == q.n_vars


def test_roundtrip_h5ad(trained, tmp_path):
    a = trained.copy()
    xl.tl.attribute(a, method="deeplift")
    a.write_h5ad(tmp_path / "a.h5ad")
    b = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(sc.get.rank_genes_groups_df(b, None, key="xl_deeplift"),
                                  sc.get.rank_genes_groups_df(a, None, key="xl_deeplift"))


def test_mudata_attributions_per_modality():
    mdata = xl.datasets.brca_multiomics()
    with pytest.warns(UserWarning, match="negative values"):
        xl.tl.train_classifier(mdata, "subtype", mods=["mrna", "mirna"], n_models=2, max_epochs=5)
    xl.tl.attribute(mdata, method="deeplift")
    for mod in ("mrna", "mirna"):
        assert mdata[mod].layers["xl_deeplift"].shape == mdata[mod].shape
        assert set(mdata[mod].uns["xl_deeplift"]["names"]["Basal"]) <= set(mdata[mod].var_names)
    assert "xl_deeplift" not in mdata["protein"].layers
    assert len(mdata.uns["xl_deeplift"]["names"]) == mdata["mrna"].n_vars + mdata["mirna"].n_vars


def test_gradient_correction(synth):
    a = synth.copy()
    a.obs["batch"] = np.where(np.arange(a.n_obs) % 3 == 0, "a", np.where(np.arange(a.n_obs) % 3 == 1, "b", "c"))
    a = xl.pp.append_covariates(a, "batch")
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=5)
    xl.tl.attribute(a, method="saliency", gradient_correction=True, key_added="corr")
    angle = a.obsm["corr_angle"]
    assert angle.shape == (a.n_obs, 1) and angle.to_numpy().min() >= 0 and angle.to_numpy().max() <= 90


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "lime"}, ValueError, "method='lime'.*deeplift"),
        ({"method": "guided_gradcam"}, ValueError, "applies to CNN models"),
        ({"target": "group_9"}, ValueError, "target='group_9' is not valid"),
        ({"baseline": np.zeros((2, 5))}, ValueError, "baseline array has shape"),
        ({"n_baselines": 0}, ValueError, "n_baselines must be a positive integer"),
        ({"baseline": "median"}, ValueError, "baseline='median' is not valid"),
        ({"models": [7]}, ValueError, "models must be member indices"),
        ({"aggregate": "max"}, ValueError, "aggregate='max' is not valid"),
        ({"gradient_correction": True, "method": "saliency"}, KeyError, "xl.pp.append_covariates"),
    ],
)
def test_attribute_bad_input(trained, kwargs, exc, match):
    a = trained[:50].copy()
    before = set(a.uns), set(a.layers)
    with pytest.raises(exc, match=match):
        xl.tl.attribute(a, **kwargs)
    assert (set(a.uns), set(a.layers)) == before


def test_attribute_before_training(synth):
    with pytest.raises(KeyError, match="run xl.tl.train_classifier first"):
        xl.tl.attribute(synth.copy())


def test_groups_absent_from_training(trained):
    a = trained[:50].copy()
    a.obs["other"] = pd.Categorical(["x", "group_0"] * 25)
    with pytest.raises(ValueError, match=r"absent from training.*\['x'\]"):
        xl.tl.attribute(a, groupby="other")
    xl.tl.attribute(a, groupby="other", target="prediction")
    assert a.uns["xl_deeplift"]["names"].dtype.names == ("group_0", "x")


def test_explainers_table():
    t = xl.tl.explainers()
    assert {"saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "deeplift", "deeplift_shap",
            "guided_gradcam", "guided_gradcam_pp", "feature_ablation"} == set(t.index)


def test_rank_by_up_puts_presence_on_top_and_keeps_absence(trained):
    a = trained.copy()
    xl.tl.attribute(a, baseline="mean")
    entry = a.uns["xl_deeplift"]
    assert entry["params"]["rank_by"] == "up" and entry["params"]["direction"] == "reference"
    for f in ("contribution", "presence", "absence"):
        assert f in entry
    lin = np.expm1(a.X.astype(float))
    for g in entry["names"].dtype.names:
        p, ab, s = (np.asarray(entry[f][g], dtype=float) for f in ("presence", "absence", "scores"))
        cols = a.var_names.get_indexer(np.asarray(entry["names"][g]).astype(str))
        inside = (a.obs["group"] == g).to_numpy()
        lower = lin[inside][:, cols].mean(0) < lin[~inside][:, cols].mean(0)  # lower on the linear scale
        want = np.maximum(p, 0) + np.where(lower, -1, 1) * np.maximum(ab, 0)
        np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-7)
        assert np.all(np.diff(s) <= 1e-7)  # sorted by the up score
    top = xl.get.top_genes(a, "xl_deeplift", n=5)
    assert (top["evidence"] == "presence").all()
    down = xl.get.top_genes(a, "xl_deeplift", n=5, direction="down")
    assert (down["absence"] > 0).all() and (down.groupby("group", observed=True)["absence"].apply(
        lambda v: bool(np.all(np.diff(v.to_numpy()) <= 1e-7)))).all()
    xl.tl.attribute(a, baseline="mean", rank_by="total", key_added="tot")
    t = a.uns["tot"]
    for g in t["names"].dtype.names:
        np.testing.assert_allclose(np.asarray(t["scores"][g]), np.asarray(t["contribution"][g]), rtol=1e-6)
    xl.tl.attribute(a, method="saliency")
    assert a.uns["xl_saliency"]["params"]["rank_by"] == "total" and "presence" not in a.uns["xl_saliency"]
    with pytest.raises(ValueError, match="rank_by='best' is not valid"):
        xl.tl.attribute(a, rank_by="best")


def test_top_genes_down_on_a_scanpy_ranking(trained):
    import scanpy as sc

    a = trained.copy()
    sc.tl.rank_genes_groups(a, "group", method="t-test")
    down = xl.get.top_genes(a, "rank_genes_groups", group="group_0", n=3, direction="down")
    want = np.asarray(a.uns["rank_genes_groups"]["names"]["group_0"])[::-1][:3]
    assert list(down["gene"]) == list(want) and (down["evidence"] == "absence").all()
    with pytest.raises(ValueError, match="direction='sideways' is not valid"):
        xl.get.top_genes(a, "rank_genes_groups", direction="sideways")


def test_layers_that_fit(trained, monkeypatch):
    from scipy import sparse

    a = trained.copy()
    a.X = np.asarray(a.X) * (np.random.default_rng(0).random(a.shape) < 0.3)  # sparse data: 30 % or fewer non-zero
    xl.tl.attribute(a, key_added="dense")
    xl.tl.attribute(a, key_added="zero_dense", baseline="zero", layer_format="dense")
    xl.tl.attribute(a, key_added="zero_auto", baseline="zero")  # auto on dense X: dense, as X
    assert isinstance(a.layers["zero_auto"], np.ndarray)
    a.X = sparse.csr_matrix(a.X)
    xl.tl.attribute(a, key_added="zero", baseline="zero")  # auto on sparse X: sparse, exact zeros not stored
    assert sparse.issparse(a.layers["zero"]) and a.layers["zero"].nnz <= a.X.nnz
    np.testing.assert_array_equal(a.layers["zero"].toarray(), a.layers["zero_dense"])
    a.X = a.X.toarray()
    xl.tl.attribute(a, key_added="top", layer_genes="top", top_k=5)
    top = a.layers["top"].toarray()
    kept = np.flatnonzero(np.abs(top).sum(0) > 0)
    assert 0 < kept.size <= 3 * 5
    np.testing.assert_array_equal(top[:, kept], a.layers["dense"][:, kept])
    assert a.uns["top"]["params"]["layer_genes"] == "top"
    for g in a.uns["top"]["names"].dtype.names:  # the ranking is the same as without a gene subset
        assert list(a.uns["top"]["names"][g]) == list(a.uns["dense"]["names"][g])
    with pytest.warns(xl.ScxlWarning, match=r"float16' applies to a dense layer; the sparse one of 4 genes is smaller"):
        xl.tl.attribute(a, key_added="half", layer_dtype="float16", layer_genes=list(a.var_names[:4]))
    assert sparse.issparse(a.layers["half"]) and a.layers["half"].dtype == np.float32  # 4 × 8 bytes, not 60 × 2 a row
    assert a.uns["half"]["params"]["layer_dtype"] == "float32"
    xl.tl.attribute(a, key_added="half", layer_dtype="float16", layer_genes=list(a.var_names[:4]), layer_format="dense")
    assert a.layers["half"].dtype == np.float16
    xl.tl.attribute(a, key_added="most", layer_genes=list(a.var_names[:40]))  # 40 × 8 > 60 × 4 bytes a row: dense
    assert isinstance(a.layers["most"], np.ndarray) and not a.layers["most"][:, 40:].any()
    with pytest.raises(ValueError, match="float16.*layer_format='dense'"):
        xl.tl.attribute(a, key_added="bad", layer_dtype="float16", layer_format="sparse")
    with pytest.raises(KeyError, match="layer_genes are not genes"):
        xl.tl.attribute(a, key_added="bad", layer_genes=["nope"])
    import scxl._validation as V

    monkeypatch.setattr(V, "available_memory", lambda: (1000, "cgroup"))
    before = set(a.uns), set(a.layers)
    with pytest.raises(MemoryError, match=r"80 % of the 1000 bytes available, set by the memory limit of this process's cgroup .*Slurm --mem.*\)"
                                          r".*store_layer=False.*layer_genes='top'.*float16"):
        xl.tl.attribute(a, key_added="big")
    assert (set(a.uns), set(a.layers)) == before
    xl.tl.attribute(a, key_added="lean", store_layer=False)  # rankings only: no layer, no check


def test_fold_changes_match_a_float64_reference():
    """The fold changes gathered block by block in float32 runs equal float64 sums of the same rows to ~1e-7.

    Blocks in any order, of more rows than one float32 run, cells in no group (code -1), a
    log-scale block first (the whole-number test is then skipped for the later blocks).
    """
    from scxl.tl._attribute import SUM_ROWS, FoldChanges

    rng = np.random.default_rng(0)
    n, g, k = 3 * SUM_ROWS + 17, 40, 4
    X = np.log1p(rng.poisson(rng.gamma(0.5, 2.0, g), (n, g))).astype(np.float32)
    codes = rng.integers(-1, k, n)
    fc = FoldChanges(codes, k, linear=True)
    for sl in (slice(SUM_ROWS + 5, n), slice(0, SUM_ROWS + 5)):
        fc.add(sl, X[sl])
    lfc, linear = fc.result()
    assert fc.seen[-1].integer is False and fc.seen[0].minimum == 0.0
    x64 = X.astype(np.float64)
    for j in range(k):
        inside, rest = codes == j, (codes >= 0) & (codes != j)
        expect = np.log2((np.expm1(x64[inside].mean(0)) + 1e-9) / (np.expm1(x64[rest].mean(0)) + 1e-9))
        np.testing.assert_allclose(lfc[j], expect, rtol=1e-6, atol=1e-6)
        lin = np.expm1(x64)
        expect = np.log2((lin[inside].mean(0) + 1e-9) / (lin[rest].mean(0) + 1e-9))
        np.testing.assert_allclose(linear[j], expect, rtol=1e-6, atol=1e-6)


def test_fold_changes_do_not_overflow_near_float32_max():
    """Values near 88 on a log scale (expm1 near float32's largest number) give finite fold changes.

    A float32 run of such values overflows to inf; those runs are summed again in float64.
    """
    from scxl.tl._attribute import SUM_ROWS, FoldChanges

    rng = np.random.default_rng(1)
    n = 2 * SUM_ROWS + 3
    X = rng.uniform(85.0, 95.0, (n, 6)).astype(np.float32)
    codes = np.arange(n) % 2
    fc = FoldChanges(codes, 2, scale="log", linear=True)
    fc.add(slice(0, n), X)
    _, linear = fc.result()
    assert np.isfinite(linear).all()
    lin = np.expm1(np.minimum(X, np.float32(88.0))).astype(np.float64)  # as the kernel: clamped at 88 in float32
    for j in range(2):
        expect = np.log2((lin[codes == j].mean(0) + 1e-9) / (lin[codes != j].mean(0) + 1e-9))
        np.testing.assert_allclose(linear[j], expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("order", ["same", "permuted"])
def test_sparse_layer_assembled_from_chunks(order):
    """The sparse layer is built as CSR from the chunks (values + int32 columns, no COO triplets):
    rows in several chunks and not in order, genes of the ensemble in another order than the
    AnnData's, a subset of genes kept, exact zeros not stored, one all-zero chunk."""
    from scipy import sparse

    from scxl.tl._attribute import _Destination, _Layer

    rng = np.random.default_rng(0)
    n, g = 23, 9
    adata = ad.AnnData(np.zeros((n, g), dtype=np.float32))
    var_pos = np.arange(g) if order == "same" else rng.permutation(g)
    rows = rng.permutation(n)  # input row i goes to AnnData row rows[i]
    d = _Destination(adata, rows, np.arange(g), var_pos, "adata")
    keep = np.array([0, 2, 3, 7, 8])
    layer = _Layer(d, "float32", keep, sparse=True)
    values = rng.normal(size=(n, g)).astype(np.float32) * (rng.random((n, g)) < 0.4)
    values[5:10] = 0
    want = np.zeros((n, g), dtype=np.float32)
    want[np.ix_(rows, var_pos[keep])] = values[:, keep]
    for start in range(0, n, 5):
        sl = slice(start, min(n, start + 5))
        layer.add(sl, values[sl])
    got = layer.result()
    assert sparse.isspmatrix_csr(got) and got.has_sorted_indices and got.indices.dtype == np.int32
    assert got.nnz == np.count_nonzero(want) and not layer.parts
    np.testing.assert_array_equal(got.toarray(), want)
    assert _Layer.bytes_needed(d, "float32", keep.size, sparse=True) >= got.data.nbytes + got.indices.nbytes + got.indptr.nbytes


def test_params_name_the_layer_the_ensemble_reads(tmp_path):
    """params["layer"] was always None, also when the ensemble was trained (and attributed) on a layer (review)."""
    a = xl.datasets.synthetic(200, 100, 3, random_state=0)
    a.layers["lognorm"] = a.X.copy()
    a.X = a.X * 0  # not what the ensemble reads
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=2, layer="lognorm")
    xl.tl.attribute(a, store_layer=False)
    params = a.uns["xl_deeplift"]["params"]
    assert params["layer"] == "lognorm" and params["use_raw"] is False
    a.write_h5ad(tmp_path / "a.h5ad")
    b = xl.datasets.synthetic(200, 100, 3, random_state=0)
    xl.tl.train_classifier(b, "group", n_models=2, max_epochs=2)
    xl.tl.attribute(b, store_layer=False)
    assert b.uns["xl_deeplift"]["params"]["layer"] is None


def test_another_ensembles_results_get_their_own_key():
    """attribute(ensemble_key="xl2") wrote to "xl_deeplift" and replaced the default ensemble's
    ranking and layer (review); its default key is now "xl2_deeplift", as predict's columns."""
    a = xl.datasets.synthetic(200, 100, 3, random_state=0)
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=2)
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=2, key_added="xl2", random_state=1)
    xl.tl.attribute(a, store_layer=False)
    first = a.uns["xl_deeplift"]["scores"].copy()
    xl.tl.attribute(a, ensemble_key="xl2", store_layer=False)
    assert a.uns["xl2_deeplift"]["params"]["ensemble_key"] == "xl2"
    assert a.uns["xl_deeplift"]["params"]["ensemble_key"] == "xl"
    np.testing.assert_array_equal(a.uns["xl_deeplift"]["scores"], first)


def test_evidence_says_lower_as_the_ranking_does():
    """Genes acting in pairs are high in part of their group's cells: Scanpy's fold change (expm1 of
    the mean log) calls them lower in the group, the linear mean (what rank_by="up" uses) does not.
    They were ranked at the top but labelled "absence" and listed as absence markers too (review);
    the evidence now follows the ranking's fold change ("pattern"), stored as logfoldchanges_linear."""
    a = xl.datasets.synthetic_combinatorial(400, 100, 3, random_state=0)
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=5, random_state=0)
    xl.tl.attribute(a, store_layer=False)
    top = xl.get.top_genes(a, "xl_deeplift", group="group_0", n=8)
    pairs = top[a.var.loc[top["gene"], "role"].to_numpy() == "marker_pair"]
    assert len(pairs) >= 4
    assert (pairs["logfoldchanges"] < 0).any() and (pairs["logfoldchanges_linear"] > 0).all()
    assert set(pairs["evidence"]) <= {"presence", "pattern"}
    down = xl.get.top_genes(a, "xl_deeplift", group="group_0", direction="down")
    assert not set(down["gene"]) & set(pairs["gene"]) and (down["logfoldchanges_linear"] < 0).all()


def test_a_rankings_only_run_removes_the_layer_of_the_previous_run_and_says_so(trained):
    a = trained.copy()
    xl.tl.attribute(a, baseline="zero")
    assert "xl_deeplift" in a.layers
    with pytest.warns(xl.ScxlWarning, match=r"removed layers\['xl_deeplift'\] of the previous attribute run under "
                                            r"'xl_deeplift': this run did not write it \(store_layer=False\)"):
        xl.tl.attribute(a, baseline="mean", store_layer=False)
    assert "xl_deeplift" not in a.layers and a.uns["xl_deeplift"]["params"]["store_layer"] == "no"
    xl.tl.attribute(a, baseline="mean")  # a layer again: nothing stale, nothing said
    assert "xl_deeplift" in a.layers


def test_scanpy_reads_the_ranking_as_each_group_against_the_rest(trained):
    """params['reference'] is Scanpy's comparison group ('rest'); the explainer's reference is params['baseline']."""
    import matplotlib.pyplot as plt

    from scxl._keys import baseline_of

    a = trained.copy()
    xl.tl.attribute(a, baseline="zero", store_layer=False)
    p = a.uns["xl_deeplift"]["params"]
    assert p["reference"] == "rest" and p["baseline"] == "zero" and baseline_of(p) == "zero"
    assert baseline_of({"reference": "mean"}) == "mean"  # results written before the field was renamed
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="set_ticklabels", category=UserWarning)  # scanpy's own
        sc.pl.rank_genes_groups_violin(a, key="xl_deeplift", groups=["group_0"], n_genes=2, show=False)
    assert plt.gca().get_title() == "group_0 vs. rest"
    plt.close("all")


def test_unlabelled_query_data_are_grouped_by_their_predictions(trained):
    ens = xl.get.ensemble(trained)
    q = trained.copy()
    del q.obs["group"], q.uns["xl"]
    with pytest.raises(KeyError, match=r"obs has no column 'group', the labels the ensemble was trained on .*"
                                       r"xl\.tl\.predict.*target='prediction'"):
        xl.tl.attribute(q, ensemble=ens, target="prediction", store_layer=False)
    xl.tl.predict(q, ensemble=ens)
    with pytest.raises(KeyError, match="obs has no column 'group'"):  # towards labels there are none
        xl.tl.attribute(q, ensemble=ens, store_layer=False)
    xl.tl.attribute(q, ensemble=ens, target="prediction", store_layer=False)
    assert q.uns["xl_deeplift"]["params"]["groupby"] == "xl_prediction"
    assert set(xl.get.top_genes(q, "xl_deeplift", n=2)["group"]) <= set(ens.classes)


def test_unlabelled_data_are_grouped_by_the_predictions_of_the_ensemble_explained(trained):
    """Another ensemble key's predictions (obs['<key>_prediction']); all-missing predictions are no groups (review)."""
    q = trained.copy()
    q.uns["other"] = q.uns.pop("xl")
    del q.obs["group"]
    xl.tl.predict(q, ensemble_key="other")
    xl.tl.attribute(q, ensemble_key="other", target="prediction", store_layer=False)
    assert q.uns["other_deeplift"]["params"]["groupby"] == "other_prediction"
    r = q.copy()
    r.obs["other_prediction"] = pd.Categorical([np.nan] * r.n_obs, categories=xl.get.ensemble(r, "other").classes)
    with pytest.raises(KeyError, match=r"xl\.tl\.predict\(adata, ensemble_key='other'\).*obs\['other_prediction'\]"):
        xl.tl.attribute(r, ensemble_key="other", target="prediction", store_layer=False, overwrite=True)


def test_the_layer_estimate_bounds_the_layer_stored_and_auto_takes_the_smaller(trained, monkeypatch):
    """With exact zeros the sparse layer holds at most the input's stored values; 'auto' is dense where that is smaller."""
    import scipy.sparse as sp

    import scxl.tl._attribute as attribute_module

    seen = []
    real = attribute_module.check_layer_room
    monkeypatch.setattr(attribute_module, "check_layer_room", lambda need, shape, **kw: (seen.append(need), real(need, shape, **kw)))

    def stored(layer):
        return layer.data.nbytes + layer.indices.nbytes + layer.indptr.nbytes if sp.issparse(layer) else layer.nbytes

    rng = np.random.default_rng(0)
    for density, genes, want_sparse, noise in ((0.2, None, True, None), (0.9, None, False, None),
                                               (1.0, list(trained.var_names[:20]), True, None),
                                               (0.2, None, False, (3, 0.5))):  # SmoothGrad: noise on x = 0 contributes
        a = trained.copy()
        x = np.asarray(a.X) + 0.01  # no zeros, then a fraction `density` kept
        a.X = sp.csr_matrix(x * (rng.random(x.shape) < density)) if density < 1 else x
        seen.clear()
        xl.tl.attribute(a, baseline="zero", layer_genes=genes, smoothgrad=noise)
        layer = a.layers["xl_deeplift"]
        assert sp.issparse(layer) == want_sparse, density
        assert seen and seen[0] >= stored(layer), (density, seen, stored(layer))


def test_reference_cells_are_read_where_the_explained_data_are(synth):
    a = synth.copy()
    a.layers["lognorm"] = a.X.copy()
    xl.tl.train_classifier(a, "group", layer="lognorm", n_models=2, max_epochs=2, random_state=0)
    ens = xl.get.ensemble(a)
    q, refs = synth.copy(), synth[:20].copy()  # the values in X, as the query's
    xl.tl.attribute(q, ensemble=ens, layer="X", baseline=refs, store_layer=False)
    a2 = synth.copy()
    a2.layers["lognorm"] = a2.X.copy()
    refs2 = a2[:20].copy()
    xl.tl.attribute(a2, ensemble=ens, baseline=refs2, store_layer=False)
    np.testing.assert_allclose(q.uns["xl_deeplift"]["scores"].tolist(), a2.uns["xl_deeplift"]["scores"].tolist(), rtol=1e-5)


def test_options_an_explainer_does_not_take_are_refused_in_the_callers_words(trained):
    with pytest.raises(ValueError, match=r"method='saliency' takes no reference \(baseline\): leave baseline=None.*'deeplift'"):
        xl.tl.attribute(trained, method="saliency", baseline="zero")
    with pytest.raises(ValueError, match=r"gradient_correction=True applies to the gradient explainers .*method='deeplift'"):
        xl.tl.attribute(trained, gradient_correction=True)


def test_n_steps_sets_the_integrated_gradients_estimate_of_a_cnn(synth):
    a = synth[:120].copy()
    xl.tl.train_classifier(a, "group", model="cnn", n_models=1, max_epochs=1, random_state=0)
    layers = {}
    for n in (4, 32):
        xl.tl.attribute(a, method="integrated_gradients", baseline="zero", n_steps=n, key_added=f"ig{n}")
        assert a.uns[f"ig{n}"]["params"]["n_steps"] == n
        layers[n] = np.asarray(a.layers[f"ig{n}"])
    assert not np.allclose(layers[4], layers[32])  # an estimate that the steps refine
    with pytest.raises(ValueError, match=r"n_steps must be a positive integer"):
        xl.tl.attribute(a, method="integrated_gradients", n_steps=0)


def test_a_query_can_be_explained_from_another_layer_and_the_tools_after_it_read_the_same(synth):
    from scxl.tl._attribute import input_of

    a = synth.copy()
    a.layers["lognorm"] = a.X.copy()
    xl.tl.train_classifier(a, "group", layer="lognorm", n_models=2, max_epochs=2, random_state=0)
    ens = xl.get.ensemble(a)
    q = synth.copy()  # the same values, in X
    xl.tl.attribute(q, ensemble=ens, layer="X")
    assert q.uns["xl_deeplift"]["params"]["layer"] is None and q.uns["xl_deeplift"]["params"]["use_raw"] is False
    a2 = synth.copy()
    a2.layers["lognorm"] = a2.X.copy()
    xl.tl.attribute(a2, ensemble=ens)
    np.testing.assert_allclose(np.asarray(q.layers["xl_deeplift"]), np.asarray(a2.layers["xl_deeplift"]), atol=1e-6)
    q.uns["xl"] = a.uns["xl"]  # the tools below find the ensemble by key; q still has no layer 'lognorm'
    xl.tl.faithfulness(q, "xl_deeplift", max_cells=30)
    xl.tl.consistency(q, "xl_deeplift", max_cells=30)
    xl.tl.reproducibility(q, n_values=(1,), n_replicates=2, max_cells=30, layer="X")  # measured on the same values
    q2 = synth.copy()  # no ensemble in uns: given, as to attribute
    xl.tl.reproducibility(q2, ensemble=ens, n_values=(1,), n_replicates=2, max_cells=30, layer="X")
    np.testing.assert_allclose(q2.uns["xl_reproducibility"]["curves"]["spearman"],
                               q.uns["xl_reproducibility"]["curves"]["spearman"])
    with pytest.raises(ValueError, match="train_missing grows the ensemble stored in uns"):
        xl.tl.reproducibility(q2, ensemble=ens, train_missing=True, overwrite=True)
    assert q.uns["xl_reproducibility"]["params"]["layer"] is None
    with pytest.raises(KeyError, match=r"layer='X'"):  # (q has no layer 'lognorm', where training read)
        xl.tl.reproducibility(q, n_values=(1,), n_replicates=2, max_cells=30, overwrite=True)
    assert input_of(q, {"explainer": "deeplift"}) == {}  # results written before params held the source


def test_a_rankings_only_run_never_removes_a_layer_of_the_users(trained):
    a = trained.copy()
    a.layers["mine"] = a.X.copy()
    xl.tl.attribute(a, key_added="mine", store_layer=False)
    assert "mine" in a.layers
