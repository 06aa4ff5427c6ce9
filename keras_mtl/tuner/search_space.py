"""Search spaces over the registered weighting methods and sharing schemes.

Each class declares its own `search_space` (`{argument: spec}`); a spec is
a list of choices, a dict of `keras_tuner` `Int`/`Float`/`Choice`
arguments, or a fixed value.
"""

import inspect
import types


def _registry(module):
    """`({name: class}, [one name per class])` of a registry module."""
    return module.registry.as_dict(), module.registry.names()


def declared_spaces(module):
    """Read-only `{name: search_space}` of the classes that declare one."""
    classes, names = _registry(module)
    return types.MappingProxyType(
        {
            name: dict(classes[name].search_space)
            for name in names
            if getattr(classes[name], "search_space", None)
        }
    )


def _accepted_arguments(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name
        for name, p in parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def _required_arguments(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name
        for name, p in parameters.items()
        if name != "self"
        and p.default is p.empty
        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def _declare(hp, name, spec):
    if isinstance(spec, dict) and "values" in spec:
        return hp.Choice(name, **spec)
    if isinstance(spec, dict):
        low, high = spec.get("min_value"), spec.get("max_value")
        if low is None or high is None:
            raise ValueError(
                f"Search space of {name!r}: a dict needs `min_value` and "
                f"`max_value`, or `values`. Received: {spec!r}"
            )
        is_int = all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (low, high, spec.get("default", 0))
        )
        if is_int:
            return hp.Int(name, **spec)
        return hp.Float(name, **spec)
    if isinstance(spec, (list, tuple)):
        return hp.Choice(name, list(spec))
    return hp.Fixed(name, spec)


class Choices:
    """A tunable choice among registry entries, each with its arguments.

    Argument ranges come from each class's `search_space`, updated per
    argument by `search_space` (`{name or alias: {argument: spec}}`).
    """

    def __init__(self, kind, module, methods, search_space):
        self.kind = kind
        self.module = module
        self.search_space = dict(search_space or {})
        if methods is not None and methods != "all":
            if isinstance(methods, str) or not isinstance(
                methods, (list, tuple)
            ):
                raise TypeError(
                    f"`{kind}` choices must be None, 'all' or a list of names. "
                    f"Received: {methods!r}"
                )
            classes, names = _registry(module)
            unknown = [m for m in methods if m not in classes]
            if unknown or not methods:
                raise ValueError(
                    f"Unknown {kind} {unknown or methods}. Expected names "
                    f"among {names}."
                )
            for name in methods:
                missing = _required_arguments(classes[name]) - set(
                    self._space_of(name, classes)
                )
                if missing:
                    raise ValueError(
                        f"{kind.capitalize()} '{name}' needs arguments "
                        f"{sorted(missing)}: give them a search space in "
                        f"`{kind}_search_space`."
                    )
        self.methods = methods

    def names(self):
        if self.methods != "all":
            return list(self.methods)
        # Read at call time, so methods registered later are included;
        # those with required arguments and no search space are left out.
        classes, names = _registry(self.module)
        return [
            name
            for name in names
            if _required_arguments(classes[name])
            <= set(self._space_of(name, classes))
        ]

    def _space_of(self, name, classes):
        cls = classes[name]
        space = dict(getattr(cls, "search_space", {}))
        for key, arguments in self.search_space.items():
            if classes.get(key) is cls:
                space.update(arguments)
        accepted = _accepted_arguments(cls)
        return {k: v for k, v in space.items() if k in accepted}

    def build(self, hp, default):
        classes, _ = _registry(self.module)
        names = self.names()
        if default in names:
            names.remove(default)
            names.insert(0, default)
        chosen = hp.Choice(self.kind, names, default=names[0])
        instance = None
        for name in names:
            with hp.conditional_scope(self.kind, [name]):
                kwargs = {
                    arg: _declare(hp, f"{name}_{arg}", spec)
                    for arg, spec in self._space_of(name, classes).items()
                }
            if name == chosen:
                instance = classes[name](**kwargs)
        return instance
