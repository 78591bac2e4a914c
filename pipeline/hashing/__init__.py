"""Known media: perceptual hashes of images and video frames, and the banks they are matched against.

signals.py    the signal-type interface (HMA's SignalType in small) and PDQ, its embedded implementation
video.py      a video's frame hashes the vPDQ way: PDQ per sampled frame, low quality skipped, de-duplicated
banks.py      hash banks in the audit database, searched with FAISS binary indexes, reloaded on change
exchange.py   reading and writing the hash-list formats ThreatExchange and HMA use, so real lists load

Banks never decide: consumers/known_media.py turns matches into block / review / attribution by each
bank's action. May import media and audit.
"""
