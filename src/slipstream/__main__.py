"""``python -m slipstream`` runs the CLI."""

from slipstream.cli.main import main

main()
