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
