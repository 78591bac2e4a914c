"""Account enforcement and viewers' reports.

rules      policies/enforcement.yaml: report weights and threshold, strike weights, the sanction ladder
standing   strikes (derived from the audit database) -> the account's sanction, and what it refuses
reports    feed.reports -> reports table -> report cases; a confirmed report takes the item down once
appeals    an account appeals its sanction; a senior reviewer voids its strikes or upholds them
owners     a cameo owner's view of every request that used their cameos, and their removal of a video
"""
