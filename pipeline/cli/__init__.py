"""The `trustreel` command line, one module per surface (the entry point is `pipeline.cli:app`).

main.py holds the root app and says which module serves each command; common.py the helpers they
share. Commands import what they run inside their bodies, so `trustreel --help` stays fast.
May import anything in pipeline/, consumers/, policies/ and schemas/; nothing imports it.
"""

from pipeline.cli.main import app

__all__ = ["app"]
