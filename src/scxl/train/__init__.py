"""Training kernels: stratified splits, class balancing, the member training loop, metrics."""

from ._loop import BALANCE, TrainConfig, evaluate, fit_member
from ._metrics import classification_metrics, confusion_matrix
from ._split import balanced_epoch, stratified_kfold, stratified_split

__all__ = [
    "BALANCE",
    "TrainConfig",
    "balanced_epoch",
    "classification_metrics",
    "confusion_matrix",
    "evaluate",
    "fit_member",
    "stratified_kfold",
    "stratified_split",
]
