"""Commands: evaluate."""

from provex.commands.apps import app, models_app, moe_app, prolog_app  # noqa: F401
