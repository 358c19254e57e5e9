"""``python -m inrkit.cli``: the CLI."""

from inrkit.cli.app import main

main()
