"""Tools: ``xl.tl.*`` — train ensembles, predict, and (in later modules) attribute and measure."""

from ._attribute import attribute, explainers
from ._gene_sets import gene_set_overlap
from ._predict import predict
from ._specificity import specificity
from ._train import train_classifier

__all__ = ["attribute", "explainers", "gene_set_overlap", "predict", "specificity", "train_classifier"]
