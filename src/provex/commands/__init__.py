"""Command modules. Each one attaches its commands to the apps in ``apps``.

Heavy libraries (torch, transformers) are imported inside the command functions so
that ``provex --help`` stays fast.
"""

from provex.commands import (  # noqa: F401  (imported for their registrations)
    demo,
    engine,
    evaluate,
    models,
    moe_core,
    moe_experiments,
    prolog_data,
    train,
)
from provex.commands.apps import app

__all__ = ["app"]
