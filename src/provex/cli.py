"""The ``provex`` command line, with the groups ``prolog``, ``moe`` and ``models``."""

from provex.commands import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
