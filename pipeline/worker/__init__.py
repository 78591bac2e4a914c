"""The running worker: stages built from settings and wired onto faust.

catalog.py  each stage name -> its consumers/ module, rules and dependencies (the stage catalog)
app.py      the faust app: one agent per stage plus the state feeds; the worker lifecycle

The only place (with the CLI) that knows every stage: may import consumers and everything below it.
"""
