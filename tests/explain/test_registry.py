import pandas as pd
import pytest

from scxl.explain import EXPLAINERS, explainers_table, get_explainer

NAMES = [
    "saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "deeplift",
    "deeplift_shap", "guided_gradcam", "guided_gradcam_pp", "feature_ablation",
]


def test_all_entries_present():
    assert list(EXPLAINERS) == NAMES


def test_table_columns_and_values():
    df = explainers_table()
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == NAMES
    for col in ["label", "needs_reference", "stochastic", "model_types", "fast_kernel", "group", "description"]:
        assert col in df.columns
    assert df.loc["guided_gradcam", "model_types"] == "cnn"
    assert df.loc["deeplift", "model_types"] == "mlp,cnn"
    assert df.loc["deeplift_shap", "stochastic"]
    assert not df.loc["deeplift", "stochastic"]
    assert set(df.index[df["group"] == "II"]) == {"deeplift", "deeplift_shap", "input_x_gradient", "integrated_gradients"}
    assert set(df.index[df["fast_kernel"]]) == {
        "saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "deeplift",
        "deeplift_shap", "feature_ablation",
    }


def test_spec_is_frozen():
    spec = get_explainer("saliency")
    with pytest.raises(AttributeError):
        spec.name = "x"


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="choose one of .*deeplift_shap"):
        get_explainer("lime")


def test_adding_an_explainer_and_a_reference_kind_is_one_entry_each(trained):
    """A toy explainer (gradient times a constant) and a toy reference kind (half the gene means)
    registered from outside the package run through the engine and xl.tl.attribute."""
    import numpy as np
    import torch

    import scxl as xl
    from scxl.explain import (
        EXPLAINERS,
        REFERENCE_KINDS,
        ExplainerSpec,
        ReferenceKind,
        attribute_modules,
        register_explainer,
        register_reference,
        unregister_explainer,
        unregister_reference,
    )
    from scxl.explain import _fast as F
    from scxl.explain._captum import gradient as module_gradient

    toy = ExplainerSpec(
        "toy_double_gradient", "ToyDoubleGradient", "Twice the signed gradient (test only).",
        general=lambda module, x, t, refs, opts: 2 * module_gradient(module, x, t),
        fast=lambda f, x, t, refs, opts: 2 * F.gradient(f, x, t),
        cost=EXPLAINERS["saliency"].cost,
    )
    half = ReferenceKind("toy_half_mean", "Half of every gene's mean (test only).", needs=("stats",), random=False,
                         default_n_baselines=1, draw=lambda src, b, rng: 0.5 * src.stats.mean[None])
    register_explainer(toy)
    register_reference(half)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_explainer(toy)
        ens = xl.get.ensemble(trained)
        x = trained.X.astype(np.float32)
        t = trained.obs["group"].cat.codes.to_numpy().astype(np.int64)
        fast = attribute_modules(ens.modules, x, t, "toy_double_gradient", progress=False, precision="double")
        slow = attribute_modules(ens.modules, x, t, "toy_double_gradient", progress=False, precision="double", use_fast=False)
        sal = attribute_modules(ens.modules, x, t, "saliency", progress=False, precision="double", absolute=False)
        assert fast.fast.all() and not slow.fast.any()
        np.testing.assert_allclose(fast.attributions, 2 * sal.attributions, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(slow.attributions, fast.attributions, rtol=1e-5, atol=1e-7)

        ref = attribute_modules(ens.modules, x, t, "deeplift", references="toy_half_mean", progress=False, precision="double")
        want = attribute_modules(ens.modules, x, t, "deeplift", references=0.5 * x.astype(np.float64).mean(0),
                                 progress=False, precision="double")
        assert ref.params["references"] == "toy_half_mean" and ref.params["n_baselines"] == 1
        assert not ref.params["stochastic"]
        np.testing.assert_allclose(ref.attributions, want.attributions, rtol=1e-5, atol=1e-6)

        a = trained.copy()
        xl.tl.attribute(a, method="toy_double_gradient")
        xl.tl.attribute(a, method="deeplift", baseline="toy_half_mean", key_added="half")
        assert a.uns["xl_toy_double_gradient"]["params"]["explainer"] == "toy_double_gradient"
        assert a.uns["half"]["params"]["baseline"] == "toy_half_mean"
        assert "toy_double_gradient" in xl.tl.explainers().index
        with torch.no_grad():
            assert np.isfinite(a.layers["half"]).all()
    finally:
        unregister_explainer("toy_double_gradient")
        unregister_reference("toy_half_mean")
    assert "toy_double_gradient" not in EXPLAINERS and "toy_half_mean" not in REFERENCE_KINDS


def test_registry_rejects_bad_entries():
    from scxl.explain import (
        EXPLAINERS,
        ExplainerSpec,
        ReferenceKind,
        register_explainer,
        register_reference,
    )

    with pytest.raises(TypeError, match="ExplainerSpec"):
        register_explainer("deeplift")
    with pytest.raises(ValueError, match="default_reference"):
        register_explainer(ExplainerSpec("x", "X", "x", general=lambda *a: None, cost=EXPLAINERS["saliency"].cost,
                                         needs_reference=True))
    with pytest.raises(ValueError, match="unknown needs"):
        ReferenceKind("y", "y", draw=lambda *a: None, needs=("everything",))
    with pytest.raises(ValueError, match="reserved"):
        register_reference(ReferenceKind("user", "u", draw=lambda *a: None))


def test_stochastic_flags_are_read():
    from scxl.explain import get_explainer, is_stochastic

    dls = get_explainer("deeplift_shap")
    assert dls.stochastic and is_stochastic(dls, "sample") and not is_stochastic(dls, "zero")
    assert is_stochastic(get_explainer("saliency"), None, smoothgrad=(2, 0.1))
    assert not is_stochastic(get_explainer("saliency"), None)


def test_methods_page_worked_examples_run():
    """The 'How to add an explainer or a reference kind' code on the methods page runs as written."""
    import re
    from pathlib import Path

    from scxl.explain import unregister_explainer, unregister_reference

    text = (Path(__file__).resolve().parents[2] / "docs" / "methods.md").read_text(encoding="utf-8")
    section = text.split("## How to add an explainer or a reference kind", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    ns: dict = {}
    try:
        for code in blocks:
            exec(compile(code, "methods.md", "exec"), ns)
        adata = ns["adata"]
        assert adata.layers["xl_signed_gradient"].shape == adata.shape
        assert adata.uns["dl_q25"]["params"]["baseline"] == "lower_quartile"
    finally:
        unregister_explainer("signed_gradient")
        unregister_reference("lower_quartile")
