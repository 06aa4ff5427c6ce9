"""Which variables the tasks share, and the trunk/heads split of a model.

Found with public Keras API only: a functional sub-model per task output
(its `trainable_variables` are those the task's output depends on), and
sub-models cut at the shared representation the builder recorded.
"""

import math

import keras

from keras_mtl.tasks import Task


def check_tasks(tasks):
    """Validates a task list; returns it as a list of `Task`s."""
    if isinstance(tasks, Task):
        tasks = [tasks]
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(
            "`tasks` must be a non-empty list of keras_mtl.Task. "
            f"Received: tasks={tasks!r}"
        )
    tasks = [Task.from_config(t) if isinstance(t, dict) else t for t in tasks]
    for task in tasks:
        if not isinstance(task, Task):
            raise TypeError(
                "Every element of `tasks` must be a keras_mtl.Task. "
                f"Received: {task!r}"
            )
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Task names must be unique. Duplicated: {duplicates}")
    return list(tasks)


def check_outputs(outputs, tasks):
    """`check_tasks(tasks)`, with a clear error unless `outputs` is a dict
    keyed by their names."""
    tasks = check_tasks(tasks)
    names = [t.name for t in tasks]
    if not isinstance(outputs, dict) or sorted(outputs) != sorted(names):
        raise ValueError(
            "MTLModel outputs must be a dict keyed by the task names "
            f"{names}. Received outputs: {outputs!r}"
        )
    return tasks


def split_variables(model):
    """`(shared, {task: own})`: trainable variables of several tasks' outputs
    and of one task's alone, in the order of `model.trainable_variables`."""
    owners = {}
    for name in model.task_names:
        task_model = keras.Model(model.inputs, model.output[name])
        for v in task_model.trainable_variables:
            owners.setdefault(id(v), set()).add(name)
    shared, own = [], {name: [] for name in model.task_names}
    for v in model.trainable_variables:
        tasks_of_v = owners.get(id(v), set())
        if len(tasks_of_v) == 1:
            own[next(iter(tasks_of_v))].append(v)
        elif len(tasks_of_v) > 1:
            shared.append(v)
    return shared, own


class RepresentationSplit:
    """The trunk (inputs -> representation) and heads (representation ->
    outputs) sub-models of a model with one shared representation.

    A plain object, so that Keras does not track the sub-models as layers
    of whoever holds it (their layers belong to the model).
    """

    def __init__(self, trunk, heads):
        self.trunk = trunk
        self.heads = heads


def _cuts(model, tensor, shared_variables):
    """The trunk and heads sub-models if `tensor` cuts the model in two
    with every shared variable upstream; else `None`."""
    try:
        trunk = keras.Model(model.inputs, tensor)
        heads = keras.Model(tensor, model.output)
    except ValueError:
        return None
    if {id(v) for v in trunk.trainable_variables} != {
        id(v) for v in shared_variables
    }:
        return None
    return RepresentationSplit(trunk, heads)


def find_representation(model, shared_variables):
    """The name of the last layer whose output cuts the model in two with
    every shared variable upstream (see `representation_split`), or `None`.

    For models built without `build_mtl_model` (or saved before it
    recorded the representation).
    """
    if not shared_variables:
        return None
    for layer in reversed(model.layers):
        if layer.name in model.task_names:
            continue
        try:
            tensor = layer.output
        except (AttributeError, ValueError):
            continue  # a layer called more than once
        if isinstance(tensor, keras.KerasTensor) and _cuts(
            model, tensor, shared_variables
        ):
            return layer.name
    return None


def representation_split(model, layer_name, shared_variables):
    """The `RepresentationSplit` at layer `layer_name`'s output, or `None`
    where there is none or it does not cut the model in two with every
    shared variable in the trunk (soft sharing)."""
    if layer_name is None:
        return None
    return _cuts(model, model.get_layer(layer_name).output, shared_variables)


class ModelStructure:
    """A model's variable split and trunk/heads split, found once.

    A plain object, so that Keras does not track its variables and
    sub-models again.

    Args:
        model: the multi-task model.
        representation: the layer name of the shared representation,
            `None`, or `"auto"` (found from the graph).
    """

    def __init__(self, model, representation):
        self.shared, self.own = split_variables(model)
        if representation == "auto":
            representation = find_representation(model, self.shared)
        self.representation = representation
        self.split = representation_split(model, representation, self.shared)


def summary_lines(model):
    """What `MTLModel.summary` adds to Keras's: the weighting, and the
    parameters shared by the tasks against those of each task alone."""

    def count(variables):
        return sum(math.prod(v.shape) for v in variables)

    method = model.weighting
    state = method.weights
    lines = [
        f"Weighting: {type(method).__name__} "
        + (
            f"({count(state)} parameters in the totals above)"
            if state
            else "(no state)"
        )
    ]
    for layer in model.layers:
        if type(layer).__module__.startswith("keras_mtl.layers"):
            settings = ", ".join(
                f"{k}={v!r}"
                for k, v in layer.get_config().items()
                if isinstance(v, (int, float, str))
                and k not in ("name", "dtype")
                and not isinstance(v, bool)
            )
            lines.append(
                f"Sharing layer {layer.name}: {type(layer).__name__}"
                f"({settings})"
            )
    lines.append(
        f"Shared parameters: {count(model.shared_variables):,} "
        "(trainable; more than one task's output depends on them)"
    )
    for name, variables in model.task_variables.items():
        lines.append(f"  {name}: {count(variables):,} task parameters")
    return lines
