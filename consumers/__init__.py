"""Stage decision modules: one module per stage, each only decides (see pipeline.runtime.stage)."""
