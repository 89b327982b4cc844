"""The ``provex`` command line: ``provex prolog``, ``provex moe`` and ``provex models``."""

from provex.commands import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
