"""Wire schemas (pydantic models) and their exported JSON Schema files."""

from schemas.models import *  # noqa: F401,F403
from schemas.models import ALL_MODELS, SCHEMA_VERSION  # noqa: F401
