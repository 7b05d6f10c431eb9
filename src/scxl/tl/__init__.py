"""Tools: ``xl.tl.*`` — train ensembles, predict, and (in later modules) attribute and measure."""

from ._attribute import attribute, explainers
from ._evaluate import compare_explainers, consistency, faithfulness, select_models
from ._gene_sets import gene_set_overlap
from ._predict import predict
from ._reproducibility import reproducibility
from ._specificity import specificity
from ._train import train_classifier

__all__ = ["attribute", "compare_explainers", "consistency", "explainers", "faithfulness", "select_models", "gene_set_overlap", "predict", "reproducibility", "specificity", "train_classifier"]
