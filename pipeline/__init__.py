"""trustreel's shared stream runtime, stage wiring, storage and command line."""
