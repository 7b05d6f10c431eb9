from __future__ import annotations

import pytest

import scxl as xl


def test_ensemble_repr_and_predict(trained):
    ens = xl.get.ensemble(trained)
    assert repr(ens).startswith("Ensemble of 3 MLP models: 60 features → 3 classes")
    assert ens.predict(trained.X[:5]).shape == (5,)
    assert ens.predict_proba(trained.X, return_members=True).shape == (3, trained.n_obs, 3)


def test_not_an_ensemble(synth):
    a = synth.copy()
    a.uns["xl"] = {"foo": 1}
    with pytest.raises(ValueError, match="is not an scxl ensemble"):
        xl.get.ensemble(a)
    with pytest.raises(KeyError, match="run xl.tl.train_classifier first"):
        xl.get.training_metrics(synth)
