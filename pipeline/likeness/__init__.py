"""Who is in a request: faces and names matched against galleries and lexicons.

faces.py      FaceEmbedder interface with dlib (offline default) and insightface backends
galleries.py  face galleries (public figures, cameo owners) stored per backend, searched with FAISS
names.py      public-figure names in prompts, folded (case, accents, leetspeak) and matched at once
voices.py     VoiceEmbedder interface: a transformers x-vector model from a local directory, or a plug-in

May import media and audit. A new face backend implements faces.FaceEmbedder and is named in
embedder_from_settings; a new voice backend is a VoiceEmbedder factory named in TRUSTREEL_VOICE_BACKEND.
"""
