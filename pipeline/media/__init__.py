"""Media a request carries or produces: stored by content hash, read back as pixels.

assets.py       the content-addressed asset store (local or fsspec); references carry sha256
video_files.py  MP4 encode / probe / decode with PyAV (audio muxed when there is any)
frames.py       images and sampled video frames as RGB arrays for the checks

Imports only schemas and libraries: every check that looks at media builds on this.
"""
