"""A transformers sequence classifier from a local directory (whatever moderation model an operator
downloaded), behind the TextClassifier interface. Nothing is downloaded.

    text -> tokenizer -> model -> sigmoid (multi-label) or softmax scores per label
         -> policy mapping label -> (category, severity, threshold) -> [Signal]

Labels come from the model's config (id2label); the policy names which label means which category.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.content.signals import Category, ClassifierError, Severity, Signal


class TransformersTextClassifier:
    name = "transformers"

    def __init__(self, model_dir: Path, labels: dict[str, tuple[Category, Severity, float]],
                 max_length: int = 256) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self._model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
        self._labels = labels
        self._max_length = max_length
        self._multi_label = self._model.config.problem_type == "multi_label_classification"
        unknown = set(labels) - set(self._model.config.id2label.values())
        if unknown:
            raise ValueError(f"the policy maps labels the model in {model_dir} does not have: {sorted(unknown)}")

    def scores(self, text: str) -> dict[str, float]:
        try:
            inputs = self._tokenizer(text, return_tensors="pt", truncation=True, max_length=self._max_length)
            with self._torch.no_grad():
                logits = self._model(**inputs).logits[0]
            values = logits.sigmoid() if self._multi_label else logits.softmax(-1)
        except Exception as exc:
            raise ClassifierError(f"transformers classifier failed: {type(exc).__name__}: {exc}") from exc
        return {self._model.config.id2label[i]: float(v) for i, v in enumerate(values.tolist())}

    def classify(self, text: str) -> list[Signal]:
        signals = []
        for label, score in self.scores(text).items():
            mapped = self._labels.get(label)
            if mapped is not None and score >= mapped[2]:
                signals.append(Signal(mapped[0], mapped[1], score, self.name, {"label": label}))
        return signals
