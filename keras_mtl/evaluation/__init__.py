"""Did sharing help? Single-task baselines, Delta_m and task relatedness.

Results are plain dicts `{task: {metric: value}}`, as `evaluate_tasks`
returns them; `{task: value}` (one unnamed metric per task) is accepted too.

- `delta_m`: Delta_m%, relative changes and the mean log-metric.
- `report`: the results table, and Keras logs grouped by task.
- `baselines`: single-task baselines of the same architecture and budget.
- `relatedness`: the cosine similarity of the tasks' gradients.
- `affinity`: TAG's lookahead task affinities, and task groups from them.
- `conflict`: `GradientConflict`, a callback logging gradient conflict.
- `experts`: `ExpertUtilization`, a callback logging MMoE/PLE gate use.
- `model_spec`: `ModelSpec`, which builds independent models of one spec.
"""

from keras_mtl.evaluation.affinity import group_tasks
from keras_mtl.evaluation.affinity import task_affinity
from keras_mtl.evaluation.baselines import evaluate_tasks
from keras_mtl.evaluation.baselines import train_single_task_baselines
from keras_mtl.evaluation.conflict import GradientConflict
from keras_mtl.evaluation.delta_m import AVERAGES
from keras_mtl.evaluation.delta_m import delta_m
from keras_mtl.evaluation.delta_m import mean_log_metric
from keras_mtl.evaluation.delta_m import relative_changes
from keras_mtl.evaluation.directions import metric_higher_is_better
from keras_mtl.evaluation.experts import ExpertUtilization
from keras_mtl.evaluation.model_spec import ModelSpec
from keras_mtl.evaluation.relatedness import gradient_cosine_similarity
from keras_mtl.evaluation.report import results_table
from keras_mtl.evaluation.report import task_results_from_logs

__all__ = [
    "AVERAGES",
    "ExpertUtilization",
    "GradientConflict",
    "ModelSpec",
    "delta_m",
    "evaluate_tasks",
    "gradient_cosine_similarity",
    "group_tasks",
    "mean_log_metric",
    "metric_higher_is_better",
    "relative_changes",
    "results_table",
    "task_affinity",
    "task_results_from_logs",
    "train_single_task_baselines",
]
