"""Registry of anonymization methods: one module each, imported only when used."""

from __future__ import annotations

import importlib

from anoncli.errors import AnoncliError
from anoncli.methods.base import Method, MethodOptions, MethodOutput, options_from_params

# name -> "module:Class"; a new method needs one module and one line here.
REGISTRY: dict[str, str] = {
    "mcadams": "anoncli.methods.mcadams:McAdams",
    "identity": "anoncli.methods.identity:Identity",
    "pcmelgan": "anoncli.methods.pcmelgan:PCMelGAN",
    "gengan": "anoncli.methods.gengan:GenGAN",
    "psegan": "anoncli.methods.psegan:PSEGAN",
    "siamese": "anoncli.methods.siamese:Siamese",
    "rdalm": "anoncli.methods.rdalm:Rdalm",
    "world_norm": "anoncli.methods.world_norm:WorldNorm",
    "world_phone": "anoncli.methods.world_phone:WorldPhone",
}

DEFAULT_METHOD = "mcadams"


def method_names() -> list[str]:
    """Registered method names, sorted."""
    return sorted(REGISTRY)


def method_class(name: str) -> type[Method]:
    """The `Method` subclass registered as `name` (its module imported now); raises AnoncliError (exit 2) for an unknown name."""
    if name not in REGISTRY:
        raise AnoncliError(f"unknown method {name!r} (choose from: {', '.join(method_names())})")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_method(name: str, options: MethodOptions) -> Method:
    """An instance of method `name` built with `options`; raises AnoncliError for an unknown name or bad options."""
    return method_class(name)(options)


__all__ = [
    "Method",
    "MethodOptions",
    "MethodOutput",
    "REGISTRY",
    "DEFAULT_METHOD",
    "create_method",
    "method_class",
    "method_names",
    "options_from_params",
]
