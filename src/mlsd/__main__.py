"""``python -m mlsd``: the same as the ``mlsd`` command."""

from .cli import main

main()
