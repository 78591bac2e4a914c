"""How records move through Kafka, exactly once.

topics.py        topic names (with prefix) and how each is created
transactions.py  one Kafka transaction per batch: outputs and the input offsets commit together
faust_transport  the faust app a worker runs its agents on
feed_freshness   how far the group has read a topic (publish waits for the state feeds to catch up)

The lowest layer: imports only pipeline.settings and schemas.
"""
