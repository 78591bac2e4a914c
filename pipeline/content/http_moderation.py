"""A moderation service over HTTP, in the OpenAI moderation API's request and response shape.

    POST {url}  {"model": M, "input": text}    (Authorization: Bearer <key> when configured)
    <- {"results": [{"flagged": bool, "categories": {...}, "category_scores": {"sexual": 0.93, ...}}]}

Works with a hosted moderation API or Llama Guard behind an OpenAI-compatible server. Each call has a
timeout and a bounded number of retries (connection errors, 429 and 5xx); then ClassifierError, which
the content stage turns into a rejection or a review, never a pass.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from pipeline.content.signals import Category, ClassifierError, Severity, Signal

# The API's category names -> ours; the policy's thresholds decide severity.
OPENAI_CATEGORIES = {
    "sexual": Category.SEXUAL, "sexual/minors": Category.SEXUAL_MINORS, "self-harm": Category.SELF_HARM,
    "self-harm/intent": Category.SELF_HARM, "self-harm/instructions": Category.SELF_HARM,
    "violence": Category.VIOLENCE, "violence/graphic": Category.VIOLENCE_GRAPHIC, "hate": Category.HATE,
    "hate/threatening": Category.HATE, "harassment": Category.HARASSMENT,
    "harassment/threatening": Category.HARASSMENT, "illicit": Category.ILLICIT_INSTRUCTIONS,
    "illicit/violent": Category.ILLICIT_INSTRUCTIONS,
}


class HttpModerationClassifier:
    name = "http"

    def __init__(self, url: str, thresholds: dict[str, float], model: str | None = None, api_key: str | None = None,
                 timeout_seconds: float = 5.0, retries: int = 2, backoff_seconds: float = 0.2) -> None:
        """`thresholds`: severity name -> the lowest score that counts at that severity (low/medium/high)."""
        self._url = url
        self._model = model
        self._api_key = api_key
        self._timeout = timeout_seconds
        self._retries = retries
        self._backoff = backoff_seconds
        self._thresholds = sorted(((score, Severity(name)) for name, score in thresholds.items()), reverse=True)

    def scores(self, text: str) -> dict[str, float]:
        body = json.dumps({"input": text} | ({"model": self._model} if self._model else {})).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        problem = "no attempt"
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    document = json.loads(response.read())
                return {str(k): float(v) for k, v in document["results"][0]["category_scores"].items()}
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
                if exc.code != 429 and exc.code < 500:
                    break  # the request itself is wrong: asking again will not help
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                problem = f"unexpected response: {type(exc).__name__}: {exc}"
                break
        raise ClassifierError(f"moderation endpoint {self._url} failed after {attempt + 1} attempt(s): {problem}")

    def classify(self, text: str) -> list[Signal]:
        found: dict[Category, Signal] = {}
        for name, score in self.scores(text).items():
            category = OPENAI_CATEGORIES.get(name)
            severity = next((severity for floor, severity in self._thresholds if score >= floor), None)
            if category is None or severity is None:
                continue
            current = found.get(category)
            if current is None or score > current.score:
                found[category] = Signal(category, severity, score, self.name, {"api_category": name})
        return list(found.values())
