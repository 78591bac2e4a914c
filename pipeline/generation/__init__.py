"""Making the video: the diffusers generator behind a small interface.

generator.py       VideoGenerator protocol and the diffusers implementation (GPU batching, timeouts)
batching.py        which queued jobs may share one pipeline call
tiny_generator.py  a tiny random LTX-Video pipeline for the demo, tests and benchmarks (no download)

May import media.
"""
