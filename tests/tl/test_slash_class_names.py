"""Class names with "/" (PBMC's own ``CD4+/CD25 T Reg``): results write to .h5ad and .zarr and read back.

anndata writes the columns of a DataFrame as keys: ``.zarr`` refuses ``/`` in keys and ``.h5ad``
warns (a FutureWarning) that it will. The record arrays of the rankings hold group names as
fields of one dataset, not as keys, so they are not affected and stay as Scanpy writes them.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

import scxl as xl

REG = "CD4+/CD25 T Reg"


@pytest.fixture(scope="module")
def analysed(pbmc):
    a = pbmc.copy()
    assert REG in a.obs["cell_type"].cat.categories
    xl.tl.train_classifier(a, "cell_type", n_models=2, max_epochs=2)
    xl.tl.predict(a)
    xl.tl.attribute(a, method="saliency")
    xl.tl.gene_set_overlap(a, "xl_saliency", {"some": list(a.var_names[:50])}, top_k=20, specificity_key=None,
                           de_groups=(REG, "CD19+ B"))
    sc.tl.rank_genes_groups(a, "cell_type", method="t-test")
    return a


def _write_read(a, path, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # anndata's "Forward slashes will be disallowed"
        warnings.filterwarnings("ignore", message=".*zarr v2.*", category=UserWarning)
        if fmt == "h5ad":
            a.write_h5ad(path)
            return ad.read_h5ad(path)
        a.write_zarr(path)
        return ad.read_zarr(path)


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_round_trip_without_warnings(analysed, tmp_path, fmt):
    back = _write_read(analysed, tmp_path / f"pbmc.{fmt}", fmt)
    proba = xl.get.proba(back)
    assert list(proba.columns) == list(xl.get.ensemble(back).classes) and REG in proba.columns
    np.testing.assert_allclose(proba.to_numpy(), xl.get.proba(analysed).to_numpy())
    assert REG in back.obs["xl_prediction"].cat.categories
    assert REG in xl.get.top_genes(back, "xl_saliency")["group"].cat.categories
    df = sc.get.rank_genes_groups_df(back, REG, key="xl_saliency")
    assert len(df) == back.n_vars
    assert REG in back.uns["rank_genes_groups"]["names"].dtype.names  # Scanpy's own record arrays
    assert REG in back.uns["xl"]["recall"].index
    assert back.uns["xl_saliency_overlap"]["params"]["de_groups"][0] == REG
    # the read-back ensemble predicts the same
    xl.tl.predict(back, key_added="again")
    assert (back.obs["again_prediction"] == analysed.obs["xl_prediction"]).all()


def test_stored_columns_and_getter(analysed):
    stored = analysed.obsm["xl_proba"]
    assert all("/" not in c for c in stored.columns)
    assert "CD4+\u2215CD25 T Reg" in stored.columns
    assert list(xl.get.proba(analysed).columns) == list(analysed.obs["xl_prediction"].cat.categories)
    with pytest.raises(KeyError, match=r"no class probabilities under obsm\['nope_proba'\]: run xl.tl.predict"):
        xl.get.proba(analysed, "nope")


def test_plots_show_real_class_names(analysed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = xl.pl.training(analysed, return_fig=True)
    labels = {t.get_text() for ax in fig.axes for t in ax.get_yticklabels() + ax.get_xticklabels()}
    assert any(REG in t for t in labels)
    plt.close("all")
    sc.pl.rank_genes_groups_dotplot(analysed, key="xl_saliency", n_genes=2, show=False)
    plt.close("all")
