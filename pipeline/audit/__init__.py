"""The audit database: every decision, with the policy version that made it.

db.py         tables, engine and Alembic migrations (the schema of the whole database)
store.py      decisions unique per (request, stage), stored with the message they send: exactly one outcome
queries.py    what auditors ask: a request path, decisions by account or cameo, rejections, counts
retention.py  expiring prompts and media references while the decision skeleton stays
local_postgres.py  a throwaway PostgreSQL server (Debian's package) for tests and benchmarks

May import transport (a stored decision keeps its outgoing message), schemas and pipeline.settings.
"""
