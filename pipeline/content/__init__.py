"""What a request shows or says: content classifiers behind small interfaces, like HMA's signal types.

signals.py            Category x Severity vocabulary, Signal, the classifier protocols, ClassifierError
lexicon.py            the embedded offline text classifier: multilingual lexicons + rules (policies/lexicons/content)
learned.py            an embedded text model trained on labelled example prompts (policies/examples): guesses, to review
images.py             NudeNet (embedded, its ONNX detector ships in the wheel) for images and frames
transformers_text.py  a sequence classifier from a local directory (any moderation model an operator has)
http_moderation.py    a moderation service in the OpenAI moderation API's shape (timeouts, bounded retries)
transcribers.py       speech to text for generated sound (a local ASR model, or a plug-in)

Backends never decide: consumers/content.py turns their signals into block / review / age labels by
policy. May import media and likeness (resampling); nothing here imports a stage.
"""
