"""Classification metrics (pure NumPy)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows true class, columns predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float | np.ndarray]:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall.

    Classes absent from ``y_true`` are left out of the balanced accuracy and macro-F1 (as
    scikit-learn does for recall; F1 averages over classes present in truth or prediction).
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0, 2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    present = (support > 0) | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "balanced_accuracy": float(np.nanmean(recall)) if (support > 0).any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "recall": recall,
        "confusion": cm,
    }
