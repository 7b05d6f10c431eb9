"""Tools: ``xl.tl.*`` — train ensembles, predict, and (in later modules) attribute and measure."""

from ._predict import predict
from ._train import train_classifier

__all__ = ["predict", "train_classifier"]
