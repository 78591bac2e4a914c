"""Export the message models as JSON Schema files, so producers in other languages can validate.

The files under schemas/json are generated; a test fails when they drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.models import ALL_MODELS

JSON_DIR = Path(__file__).parent / "json"


def render_all() -> dict[str, str]:
    """File name -> JSON text for every model, deterministic so diffs stay meaningful."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in ALL_MODELS.items()
    }


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of exported files that are missing or differ from the models."""
    return [
        name
        for name, text in render_all().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
