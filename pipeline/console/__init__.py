"""The trust and safety web console (`trustreel console`): server-rendered pages on Starlette.

accounts   reviewer accounts: roles, argon2id password hashes, enable/disable
access     who is asking (session login, or a trusted proxy's identity header), CSRF tokens, role checks
queues     the work queues (reviews, appeals, reports, takedown appeals, sanction appeals), filtered, oldest first
cases      one request's whole story for a reviewer: every decision, its evidence, its media
actions    what a reviewer's click does: the same exactly-once paths as the CLI, each recorded with their id
app        routes and templates
"""
