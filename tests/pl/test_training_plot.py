from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import scxl as xl


def test_training_plot_draws_members_and_confusion(trained):
    axes = xl.pl.training(trained)
    n_models = trained.uns["xl"]["params"]["n_models"]
    assert len(axes[0].get_lines()) == 2 * n_models  # train + validation per member
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["group_0", "group_1", "group_2"]
    img = axes[1].get_images()[0].get_array()
    assert img.shape == (3, 3) and abs(img.sum(1) - 1).max() < 1e-9
    fig = xl.pl.training(trained, return_fig=True, normalize=False)
    assert fig.axes[1].get_images()[0].get_array().sum() == trained.uns["xl"]["confusion"].sum()
    plt.close("all")


def test_training_plot_without_validation(synth):
    """validation=0: training curves only (labelled, no matplotlib warning about an empty legend)."""
    import warnings

    a = synth.copy()
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=2, validation=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        axes = xl.pl.training(a)
    assert len(axes[0].get_lines()) == 2 and [t.get_text() for t in axes[0].get_legend().get_texts()] == ["model_0", "model_1"]
    assert axes[1].texts[0].get_text() == "no validation cells"
    plt.close("all")


def test_training_plot_axes_and_epoch_ticks(trained):
    """One Axes is a clear error (it was "'Axes' object is not iterable"); epochs tick at whole numbers."""
    import pytest

    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="ax must be a pair of Axes"):
        xl.pl.training(trained, ax=ax)
    axes = xl.pl.training(trained)
    ticks = axes[0].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)
    plt.close("all")
