"""Training kernels: stratified splits, class balancing, the member training loop, metrics."""

from ._loop import (
    AUTO_EPOCH_SIZE,
    BALANCE,
    TrainConfig,
    TrainingInterrupted,
    evaluate,
    fit_member,
    improved,
    monitored_rows,
)
from ._metrics import classification_metrics, confusion_matrix
from ._split import balanced_epoch, stratified_kfold, stratified_split
from ._stacked import fit_members, stackable

__all__ = [
    "AUTO_EPOCH_SIZE",
    "BALANCE",
    "TrainConfig",
    "TrainingInterrupted",
    "balanced_epoch",
    "classification_metrics",
    "confusion_matrix",
    "evaluate",
    "fit_member",
    "fit_members",
    "improved",
    "monitored_rows",
    "stackable",
    "stratified_kfold",
    "stratified_split",
]
