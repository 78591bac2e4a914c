"""`python -m pipeline.cli`: the same command as the `trustreel` entry point."""

from pipeline.cli import app

app()
