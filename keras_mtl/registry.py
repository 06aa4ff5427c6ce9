"""Name registries of the weighting methods and the sharing schemes."""

import re
import types

import keras

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def derive_name(cls, suffix=""):
    """The registry name of a class: snake case, without `suffix`.

    `DynamicWeightAverage` -> `"dynamic_weight_average"`,
    `EqualWeighting` (suffix `"Weighting"`) -> `"equal"`. Acronyms that
    read as one word (`PCGrad`) are registered under an explicit name.
    """
    name = cls.__name__
    if suffix and name.endswith(suffix) and name != suffix:
        name = name[: -len(suffix)]
    return _WORD_BOUNDARY.sub("_", name).lower()


class Registry:
    """Classes by snake-case name, with aliases; `get` makes instances.

    Args:
        kind: str. What is registered, for error messages (`"weighting"`).
        base: the base class every entry derives from.
        suffix: str. Dropped from class names when deriving names.
            Defaults to `""`.
        alternatives: str. What else the module's `get` accepts, for the
            error on an unknown name. Defaults to `""`.

    Example:

    ```python
    @keras_mtl.weighting.register(aliases=["inv"])
    class InverseLoss(keras_mtl.weighting.Weighting):
        ...

    keras_mtl.weighting.get("inverse_loss")
    ```
    """

    def __init__(self, kind, base, suffix="", alternatives=""):
        self.kind = kind
        self.base = base
        self.suffix = suffix
        self.alternatives = alternatives
        self._classes = {}
        self._canonical = []

    def register(self, cls=None, *, name=None, aliases=()):
        """Registers a class (usable as a decorator, with or without args).

        The class is also registered for Keras serialization under
        `keras_mtl>ClassName`, so models that use it save and load, unless
        it is registered already (`keras.saving.
        register_keras_serializable(package="my_package")` applied before,
        i.e. below, this decorator keeps `my_package>ClassName`).

        Args:
            cls: the class. Defaults to `None`: returns a decorator.
            name: str. Its name. Defaults to `None`: derived from the class
                name (`derive_name`).
            aliases: list of str. Other names it answers to.

        Returns:
            The class, unchanged.
        """

        def decorate(cls):
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(
                    f"Only subclasses of {self.base.__name__} can be "
                    f"registered as a {self.kind}. Received: {cls!r}"
                )
            canonical = name or derive_name(cls, self.suffix)
            for key in (canonical, *aliases):
                owner = self._classes.get(key)
                if owner is not None and owner is not cls:
                    raise ValueError(
                        f"The {self.kind} name {key!r} is already taken by "
                        f"{owner.__name__}."
                    )
            registered = keras.saving.get_registered_name(cls)
            if registered == cls.__name__:  # not registered yet
                keras.saving.register_keras_serializable(package="keras_mtl")(
                    cls
                )
            for key in (canonical, *aliases):
                self._classes[key] = cls
            # The class name answers too, unless another class has it.
            self._classes.setdefault(cls.__name__, cls)
            if canonical not in self._canonical:
                self._canonical.append(canonical)
            return cls

        return decorate if cls is None else decorate(cls)

    def names(self):
        """The canonical names, in registration order."""
        return list(self._canonical)

    def name_of(self, cls):
        """The canonical name of a registered class (or `None`)."""
        for name in self._canonical:
            if self._classes[name] is cls:
                return name
        return None

    def __contains__(self, name):
        return name in self._classes

    def __getitem__(self, name):
        if name not in self._classes:
            also = f", {self.alternatives}" if self.alternatives else ""
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Expected one of "
                f"{self.names()}{also}."
            )
        return self._classes[name]

    def deserialize(self, config, custom_objects=None):
        """An instance from a `keras.saving.serialize_keras_object` config,
        with the registered names known; a `TypeError` if it is not one of
        the registry's base class."""
        instance = keras.saving.deserialize_keras_object(
            config, module_objects=self.as_dict(), custom_objects=custom_objects
        )
        if not isinstance(instance, self.base):
            raise TypeError(
                f"`config` must describe a {self.base.__name__}. "
                f"Received: config={config!r}"
            )
        return instance

    def as_dict(self):
        """`{name: class}` for every name, alias and class name: a read-only
        view that shows later registrations too."""
        return types.MappingProxyType(self._classes)
