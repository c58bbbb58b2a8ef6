"""``python -m cckl_core <command>``: the command line, :mod:`cckl_core.cli` (``cli`` is also the ``cckl``
console script's entry point)."""
from .cli import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
