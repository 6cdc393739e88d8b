"""``python -m gridledger`` runs the command line."""

from gridledger.cli import app

app()
