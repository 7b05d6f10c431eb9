"""A stored ensemble is checked as a whole when it is read: every damage names the source and the field."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import scxl as xl
from scxl.models import Ensemble, EnsembleFormatError


@pytest.fixture(scope="module")
def record(trained):
    return dict(trained.uns["xl"])


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return xl.get.ensemble(trained).save(tmp_path_factory.mktemp("ens") / "model.npz")


def _damaged(record, change):
    d = copy.deepcopy(record)
    change(d)
    return d


def _set(d, member, name, value):
    d["weights"][member][name] = value


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: _set(d, "model_1", "net.0.weight", d["weights"]["model_1"]["net.0.weight"][:, :40]),
         r"uns\['xl'\]: member model_1 weight 'net.0.weight' has shape \(128, 40\), expected \(128, 60\) from spec n_features=60"),
        (lambda d: _set(d, "model_0", "net.3.weight", d["weights"]["model_0"]["net.3.weight"][:2]),
         r"weight 'net.3.weight' has shape \(2, 128\), expected \(3, 128\) from spec n_classes=3"),
        (lambda d: d["weights"]["model_0"].pop("net.3.bias"), r"member model_0 lacks weight\(s\) \['net.3.bias'\]"),
        (lambda d: _set(d, "model_2", "net.9.weight", np.zeros(3)), r"member model_2 has unexpected weight\(s\) \['net.9.weight'\]"),
        (lambda d: d.__setitem__("classes", d["classes"][:2]), r"'classes' has 2 entries but spec n_classes=3 \(the output layer size\)"),
        (lambda d: d.__setitem__("classes", np.array(["a", "a", "b"], dtype=object)), r"'classes' has duplicated entries"),
        (lambda d: d.__setitem__("var_names", d["var_names"][:50]), r"'var_names' has 50 entries but spec n_features=60"),
        (lambda d: d.__setitem__("weights", [1, 2]), r"'weights' must be a dict of members \(model_0, model_1, ...\), found list"),
        (lambda d: d["weights"].__setitem__("foo", d["weights"].pop("model_2")), r"'weights' has entries \['foo'\] not named model_<i>"),
        (lambda d: d["weights"].__setitem__("model_5", d["weights"].pop("model_2")), r"members must be model_0 … model_2, found"),
        (lambda d: d["weights"].__setitem__("model_0", np.zeros(3)), r"member model_0 must be a dict of parameter name → array"),
        (lambda d: d["weights"]["model_0"]["net.0.bias"].__setitem__(0, np.nan), r"member model_0 weight 'net.0.bias' has 1 NaN or infinite"),
        (lambda d: _set(d, "model_0", "net.0.bias", np.array(["x"] * 128)), r"weight 'net.0.bias' has dtype <U1, expected numbers"),
        (lambda d: d.__setitem__("spec", dict(d["spec"], hidden=[0])), r"spec hidden=\[0\] must be a list of positive integers"),
        (lambda d: d.__setitem__("spec", dict(d["spec"], dropout=1.5)), r"spec dropout=1.5 must be a number in \[0, 1\)"),
        (lambda d: d.__setitem__("spec", dict(d["spec"], type="rnn")), r"spec type 'rnn' is not one of"),
        (lambda d: d.__setitem__("spec", "mlp"), r"'spec' must be a dict"),
        (lambda d: d.__setitem__("orders", np.zeros((3, 60))), r"'orders' is only for CNN ensembles"),
        (lambda d: d.pop("var_names"), r"is not an scxl ensemble: missing \['var_names'\]"),
    ],
)
def test_damaged_record_names_the_field(trained, record, change, match):
    a = trained.copy()
    a.uns["xl"] = _damaged(record, change)
    before = copy.deepcopy(dict(a.uns["xl"]))
    with pytest.raises(EnsembleFormatError, match=match):
        xl.get.ensemble(a)
    with pytest.raises(ValueError, match=match):  # a ValueError: the tools' callers catch those
        xl.tl.predict(a)
    assert "xl_prediction" not in a.obs and set(a.uns["xl"]) == set(before)


def test_record_is_checked_after_an_h5ad_round_trip(trained, tmp_path):
    import anndata as ad

    a = trained.copy()
    a.uns["xl"] = _damaged(dict(a.uns["xl"]), lambda d: d.__setitem__("classes", d["classes"][:2]))
    a.write_h5ad(tmp_path / "a.h5ad")
    with pytest.raises(EnsembleFormatError, match=r"uns\['xl'\]: 'classes' has 2 entries"):
        xl.get.ensemble(ad.read_h5ad(tmp_path / "a.h5ad"))


def test_cnn_orders_are_checked(synth):
    a = synth.copy()
    xl.tl.train_classifier(a, "group", model="cnn", model_kwargs={"channels": (2, 2, 2)}, n_models=2, max_epochs=1)
    rec = dict(a.uns["xl"])
    a.uns["xl"] = _damaged(rec, lambda d: d.__setitem__("orders", d["orders"][:1]))
    with pytest.raises(EnsembleFormatError, match=r"'orders' has shape \(1, 60\), expected \(2, 60\)"):
        xl.get.ensemble(a)
    a.uns["xl"] = _damaged(rec, lambda d: d["orders"].__setitem__((1, 0), d["orders"][1, 1]))
    with pytest.raises(EnsembleFormatError, match=r"'orders' of \['model_1'\] is not a permutation of range\(60\)"):
        xl.get.ensemble(a)
    a.uns["xl"] = _damaged(rec, lambda d: d.pop("orders"))
    with pytest.raises(EnsembleFormatError, match="a CNN ensemble needs 'orders'"):
        xl.get.ensemble(a)
    a.uns["xl"] = _damaged(rec, lambda d: _set(d, "model_0", "features.0.weight", np.zeros((2, 1, 3, 3), np.float32)))
    with pytest.raises(EnsembleFormatError, match=r"'features.0.weight' has shape \(2, 1, 3, 3\), expected \(2, 1, 5, 5\) from spec kernels\[0\]=5"):
        xl.get.ensemble(a)


def _rewrite(saved, tmp_path, change, name="bad.npz"):
    arrays = dict(np.load(saved))
    change(arrays)
    out = tmp_path / name
    np.savez(out, **arrays)
    return out


def _meta(arrays):
    return json.loads(arrays["__metadata__"].tobytes().decode())


def _set_meta(arrays, meta):
    arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def test_load_round_trip(saved, trained):
    ens = Ensemble.load(saved)
    np.testing.assert_allclose(ens.predict_proba(trained.X), xl.get.ensemble(trained).predict_proba(trained.X))


def test_load_names_the_file(saved, tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello world\n")
    with pytest.raises(EnsembleFormatError, match=r"ensemble file '.*notes.npz' is not a .npz \(zip\) archive \(it starts with 'hello world"):
        Ensemble.load(text)
    raw = saved.read_bytes()
    (tmp_path / "half.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EnsembleFormatError, match=r"ensemble file '.*half.npz' cannot be read as a .npz archive \(BadZipFile.*truncated"):
        Ensemble.load(tmp_path / "half.npz")
    np.save(tmp_path / "arr.npy", np.zeros(3))
    with pytest.raises(EnsembleFormatError, match=r"'.*arr.npy' is a .npy file holding a single array"):
        Ensemble.load(tmp_path / "arr.npy")
    with pytest.raises(FileNotFoundError, match=r"ensemble file '.*nothing.npz' does not exist"):
        Ensemble.load(tmp_path / "nothing.npz")
    with pytest.raises(EnsembleFormatError, match="is a directory"):
        Ensemble.load(tmp_path)


def test_load_damaged_member_data(saved, tmp_path):
    """A byte flipped inside a compressed member: zlib/CRC errors are reported with the file."""
    raw = bytearray(saved.read_bytes())
    mid = len(raw) // 3
    raw[mid : mid + 64] = bytes(64)
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    with pytest.raises(EnsembleFormatError, match=r"ensemble file '.*flipped.npz'"):
        Ensemble.load(tmp_path / "flipped.npz")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda z: z.__setitem__("__metadata__", np.frombuffer(b"{not json", dtype=np.uint8)), r"'__metadata__' is not valid JSON"),
        (lambda z: z.pop("__metadata__"), r"has no '__metadata__' entry"),
        (lambda z: _set_meta(z, [1, 2]), r"'__metadata__' must be a JSON object, found list"),
        (lambda z: _set_meta(z, {k: v for k, v in _meta(z).items() if k != "classes"}), r"metadata lacks \['classes'\]"),
        (lambda z: _set_meta(z, _meta(z) | {"format_version": 99}), r"format_version 99; this scxl reads versions up to 1: upgrade"),
        (lambda z: _set_meta(z, _meta(z) | {"n_models": 5}), r"metadata says n_models=5 but the file holds 3 member\(s\)"),
        (lambda z: _set_meta(z, _meta(z) | {"tables": {"history": "{oops"}}), r"table 'history' cannot be read"),
        (lambda z: z.__setitem__("weights/model_x/net.0.weight", z.pop("weights/model_0/net.0.weight")),
         r"array 'weights/model_x/net.0.weight' is not named 'weights/model_<i>/<parameter>'"),
        (lambda z: z.__setitem__("weights/model_0", z.pop("weights/model_0/net.0.weight")), r"array 'weights/model_0' is not named"),
        (lambda z: z.__setitem__("weights/model_0/net.0.weight", z["weights/model_0/net.0.weight"][:, :40]),
         r"ensemble file '.*bad.npz': member model_0 weight 'net.0.weight' has shape \(128, 40\), expected \(128, 60\) from spec n_features=60"),
        (lambda z: _set_meta(z, _meta(z) | {"classes": ["a", "b"]}), r"'classes' has 2 entries but spec n_classes=3"),
    ],
)
def test_load_damaged_file(saved, tmp_path, change, match):
    with pytest.raises(EnsembleFormatError, match=match):
        Ensemble.load(_rewrite(saved, tmp_path, change))


def test_predict_with_a_damaged_file_leaves_the_data_unchanged(saved, synth, tmp_path):
    bad = _rewrite(saved, tmp_path, lambda z: z.__setitem__("__metadata__", np.frombuffer(b"[", dtype=np.uint8)))
    q = synth.copy()
    with pytest.raises(ValueError, match="is not valid JSON"):
        xl.tl.predict(q, ensemble=bad)
    assert "xl_prediction" not in q.obs and not q.obsm


def test_predict_drops_tiny_weights_in_a_copy():
    """Members with subnormal-range weights (trained before the flush) predict from a flushed copy:
    the same probabilities as with those weights at 0, the members themselves untouched."""
    import torch

    from scxl.models import MLP

    torch.manual_seed(0)
    m = MLP(30, 3, hidden=[8])
    with torch.no_grad():
        m.net[0].weight[:, 4] = 3e-39
    clean = copy.deepcopy(m)
    with torch.no_grad():
        clean.net[0].weight[:, 4] = 0
    names = dict(classes=["a", "b", "c"], var_names=[f"g{i}" for i in range(30)],
                 spec=xl.models.default_spec("mlp", 30, 3, hidden=[8]))
    x = np.random.default_rng(0).gamma(1.0, 1.0, size=(40, 30)).astype(np.float32)
    x[:, 4] = 1e38  # a huge value meets the tiny weights: their products (about 0.3) would show if kept
    p = Ensemble([m], **names).predict_proba(x)
    q = Ensemble([clean], **names).predict_proba(x)
    np.testing.assert_array_equal(p, q)
    assert float(m.net[0].weight.detach()[0, 4]) == pytest.approx(3e-39, rel=1e-3)


def test_reading_draws_no_random_numbers(trained):
    """Members are built without their random initialisation (every weight is loaded next), so
    reading an ensemble is quicker and leaves the user's torch random stream where it was."""
    import torch

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ens = xl.get.ensemble(trained)
    np.testing.assert_array_equal(torch.rand(3), expected)
    for m, (name, state) in zip(ens.modules, sorted(trained.uns["xl"]["weights"].items()), strict=True):
        assert name.startswith("model_")
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), np.asarray(state[k]))
