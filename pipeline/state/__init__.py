"""Registries materialized from compacted topics: who may use a cameo, how old an account is.

consent_registry.py  cameo registration, verification, audience, grants and revocations
account_registry.py  birth dates, assurance, parental links and controls
generation_caps.py   daily generation caps, charged once per request in the database
keys.py              slot keys and partitioning, so one entity lives in one partition
enrollment.py        a cameo's verified reference faces (and voice) enrolled in its gallery entry
rights_registry.py   rights holders' protected works: names for prompts, reference images into a hash bank
feeds.py             topic records applied to the registries (replay at start, then live)

May import likeness, hashing and media (enrollment embeds reference media, rights hashes references), runtime (batch snapshots), audit
(tables), transport, schemas. A new registry goes here, with its feed in feeds.py and its topic in
transport.topics.
"""
