"""The shared stage runtime: everything a stage does except deciding.

stage.py           what a stage is (decide -> Verdict) and BatchStage for stages that decide together
runner.py          read, validate, de-duplicate, decide, record, send + commit; dead letters
batch_snapshot.py  registry reads remembered for one batch of decisions
policy_reload.py   changed policy files picked up between decisions; shadow policies

    raw record --runner--> stage.decide(item) --> audit.store --> transport (one transaction)

May import audit, transport, policies and schemas. A new stage needs nothing here: it is a module in
consumers/ that implements Stage, and an entry in pipeline.worker.catalog.
"""
