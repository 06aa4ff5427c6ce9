"""Callbacks: see what multi-task training does, and act on it.

- `MTLTensorBoard`: the logs in TensorBoard, grouped by task, with the
  conflict and affinity matrices as images.
- `GradientConflict`, `TaskAffinity`, `ExpertUtilization`: measurements
  logged while training (the first and last also in
  `keras_mtl.evaluation`).
- `DeltaMLog`, `CombinedMetric`: one multi-task score per epoch in the
  logs, for `ModelCheckpoint` and `EarlyStopping` to monitor.
- `PerTaskEarlyStopping`: each task leaves training on its own metric.
"""

from keras_mtl.callbacks.checkpoint import CombinedMetric
from keras_mtl.callbacks.checkpoint import DeltaMLog
from keras_mtl.callbacks.early_stopping import PerTaskEarlyStopping
from keras_mtl.callbacks.task_affinity import TaskAffinity
from keras_mtl.callbacks.tensorboard import MTLTensorBoard
from keras_mtl.evaluation.conflict import GradientConflict
from keras_mtl.evaluation.experts import ExpertUtilization

__all__ = [
    "CombinedMetric",
    "DeltaMLog",
    "ExpertUtilization",
    "GradientConflict",
    "MTLTensorBoard",
    "PerTaskEarlyStopping",
    "TaskAffinity",
]
