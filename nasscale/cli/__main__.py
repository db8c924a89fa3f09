"""``python -m nasscale.cli``: the same entry point as the ``nasscale`` console script."""

from nasscale.cli.app import main

main()
