"""Runtime configuration, read from TRUSTREEL_* environment variables.

Embedded defaults run everything locally (broker on localhost, SQLite file in the
working directory), so the demo needs no setup; deployments override by env.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_STAGES = ("consent", "content", "known-media", "likeness", "age", "generate", "likeness-post", "content-post",
                  "known-media-post", "provenance", "publish")
"""Stage order. MODERATION_ONLY_STAGES skips generation (e.g. when videos are made elsewhere)."""
MODERATION_ONLY_STAGES = ("consent", "content", "known-media", "likeness", "age", "publish")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRUSTREEL_", frozen=True)

    bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How every Kafka client connects: SASL_SSL in production (TLS + SCRAM)")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(default="SCRAM-SHA-512")
    kafka_username: str | None = Field(default=None, description="This process's Kafka principal (SASL user)")
    kafka_password: SecretStr | None = Field(default=None, description="Its password (prefer the password file)")
    kafka_password_file: Path | None = Field(default=None, description="File holding the SASL password")
    kafka_ca_file: Path | None = Field(default=None, description="PEM CA the broker's certificate must chain to "
                                                                 "(unset: the system's trust store)")
    kafka_cert_file: Path | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    kafka_key_file: Path | None = Field(default=None, description="PEM private key of the client certificate "
                                                                  "(unset: it is in the certificate file)")
    db_url: str = Field(default="sqlite:///trustreel.db", description="SQLAlchemy URL of the audit database")
    topic_prefix: str = Field(default="", description="Prefix for every topic name (isolates tenants and tests)")
    group_id: str = Field(default="trustreel-pipeline",
                          description="Consumer group (and transactional id prefix) shared by every stage worker")
    stages: Annotated[tuple[str, ...], NoDecode] = Field(default=DEFAULT_STAGES, description="Stage order, comma separated")
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    policy_dir: Path | None = Field(default=None, description="Directory of policy YAML files (default: packaged)")
    retention_days: int | None = Field(default=None, ge=1,
                                       description="`audit expire` drops prompts and media references after "
                                                   "this many days (unset: kept)")
    policy_check_seconds: float = Field(default=2.0, gt=0, le=3600,
                                        description="How often workers look for changed policy files")
    max_message_bytes: int = Field(default=65536, ge=1024, description="Larger stage input is dead-lettered")
    deadletter_max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    session_timeout_seconds: float = Field(default=10.0, ge=6, le=300,
                                           description="How soon a dead worker's partitions move to the others")
    stage_batch_size: int = Field(default=200, ge=1, le=5000,
                                  description="Most messages a stage handles in one database write and one "
                                              "Kafka transaction per partition (generate uses its policy's); "
                                              "also the most state-feed records applied per transaction")
    stage_batch_wait_seconds: float = Field(default=0.02, gt=0, le=10,
                                            description="How long a stage (or a state feed) waits to fill a batch")
    stage_error_retries: int = Field(default=3, ge=0, description="Retries of a failing stage before dead letter")
    asset_dir: Path = Field(default=Path("trustreel-assets"), description="Local content-addressed asset store")
    asset_url: str | None = Field(default=None,
                                  description="fsspec URL of the asset store (e.g. s3://bucket/assets); "
                                              "overrides asset_dir")
    generator_model: str = Field(default="Lightricks/LTX-Video",
                                 description="diffusers model id or local directory of the generation pipeline")
    generator_model_name: str | None = Field(default=None,
                                             description="The model's public name in C2PA manifests and on the "
                                                         "feed (default: a hub id as is; for a local directory "
                                                         "only its last part, never the server path)")
    generator_model_version: str | None = Field(default=None, description="The model's public version there")
    generator_pipeline: str = Field(default="LTXPipeline", description="diffusers text-to-video pipeline class")
    generator_image_pipeline: str | None = Field(default="LTXImageToVideoPipeline",
                                                 description="diffusers image-to-video class used for cameos")
    generator_device: str = Field(default="auto", description="auto (CUDA when present, else CPU), cpu, cuda:N")
    generator_dtype: str = Field(default="auto", pattern="^(auto|float32|float16|bfloat16)$",
                                 description="auto: float16 on CUDA, float32 on CPU")
    generator_attention_backend: str | None = Field(
        default=None, description="diffusers attention backend of the denoiser (e.g. _native_cudnn, flash); "
                                  "default: the model's own")
    generator_compile: bool = Field(default=False, description="torch.compile the denoiser: minutes on the first "
                                                               "video, faster ones afterwards")
    generator_audio_pipeline: str | None = Field(default=None,
                                                 description="diffusers text-to-audio class run beside the video "
                                                             "pipeline when it makes no audio (e.g. AudioLDM2Pipeline)")
    generator_audio_model: str | None = Field(default=None, description="Model id of the audio pipeline")
    face_backend: str = Field(default="dlib", pattern="^(dlib|insightface)$",
                              description="Face embedder: dlib (offline default) or insightface (production)")
    insightface_model_dir: Path | None = Field(default=None, description="SCRFD + ArcFace ONNX model directory")
    enrollment_face_backends: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Face backends a cameo's reference images are enrolled with, comma separated "
                                "(default: face_backend alone); enroll with a second one before switching to it")
    voice_backend: str | None = Field(default=None,
                                      description="Speaker embedder: transformers (x-vector model from "
                                                  "voice_model_dir) or package.module:factory; unset: none")
    voice_model_dir: Path | None = Field(default=None, description="Local directory of the speaker model")
    content_model_dir: Path | None = Field(default=None,
                                           description="Local transformers text classifier for the content "
                                                       "policy's 'transformers' backend")
    model_cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "trustreel", description=(
        "Where models trained from policy examples are kept between worker starts (named by what they were "
        "trained on; safe to delete)"))
    moderation_url: str | None = Field(default=None, description="OpenAI-moderation-shaped endpoint for the "
                                                                 "content policy's 'http' backend")
    moderation_model: str | None = Field(default=None, description="Model name sent to the moderation endpoint")
    moderation_api_key: str | None = Field(default=None, description="Bearer token for the moderation endpoint")
    moderation_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    moderation_retries: int = Field(default=2, ge=0, le=10)
    transcriber: str | None = Field(default=None, description="Speech to text for generated sound: transformers "
                                                              "(ASR model from transcriber_model_dir) or "
                                                              "package.module:factory; unset: none")
    transcriber_model_dir: Path | None = Field(default=None, description="Local speech recognition model")
    metrics_port: int | None = Field(default=None, ge=1, le=65535,
                                     description="Each worker serves /metrics and /healthz on this port (unset: off)")
    worker_stall_seconds: float = Field(default=120.0, gt=0,
                                        description="/healthz: an input partition with waiting records whose "
                                                    "offset has not moved for this long makes the worker unhealthy; "
                                                    "a worker holding no partition then exits (code 75) to be "
                                                    "restarted")
    consent_feed_wait_seconds: float = Field(
        default=60.0, ge=0, description="Consent waits this long at most for the consent registry to apply "
                                        "every record produced before a batch; still behind, requests with "
                                        "cameos are refused as consent_registry_behind (send again) until it "
                                        "catches up")
    send_claim_lease_seconds: float = Field(
        default=60.0, ge=0, description="A review or takedown a tool started sending is left to it this long; "
                                        "after that another try checks the topic and sends it if it is not there")
    console_secret_file: Path | None = Field(
        default=None, description="The web console's session signing key (a file of random bytes; unset: a new "
                                  "key per start, which logs everyone out on restart)")
    console_identity_header: str | None = Field(
        default=None, description="Trust this request header (e.g. X-Forwarded-User), set by an authenticating "
                                  "reverse proxy, as the reviewer's name instead of the console's own login; the "
                                  "reviewer must still exist and is held to their role. Unset: login only")
    console_secure_cookies: bool = Field(default=False, description="Session cookie sent over HTTPS only (set it "
                                                                     "behind TLS)")
    console_session_hours: float = Field(default=8.0, gt=0, le=168, description="A console login lasts this long")
    log_format: Literal["text", "json"] = Field(default="text", description="Log lines for people or for a "
                                                                            "log pipeline (JSON)")
    trace_file: Path | None = Field(default=None, description="Write finished trace spans here as JSON lines "
                                                              "(OTLP export is configured by the OTEL_* variables)")
    bank_exact_up_to: int = Field(default=200_000, ge=1,
                                  description="Hash banks larger than this are searched with a multi-index hash "
                                              "(still exact within the bank's distance) instead of a full scan")
    gallery_approximate_above: int = Field(default=50_000, ge=1,
                                           description="Gallery size above which search is approximate (HNSW)")
    c2pa_cert_chain: Path | None = Field(default=None, description="PEM signing certificate chain, leaf first")
    c2pa_private_key: Path | None = Field(default=None, description="PEM private key of the signing certificate")
    c2pa_algorithm: str = Field(default="es256", pattern="^(es256|es384|es512|ps256|ps384|ps512|ed25519)$")
    c2pa_tsa_url: str | None = Field(default=None, description="RFC 3161 timestamp authority for signatures")
    c2pa_signer_callback: str | None = Field(default=None,
                                             description="module:function that signs bytes (KMS/HSM) instead "
                                                         "of the private key file")
    c2pa_trust_anchors: Path | None = Field(default=None,
                                            description="PEM trust anchors: signed videos must validate as "
                                                        "trusted against these (provenance, verify)")
    broker_home: Path = Field(
        default=Path.home() / ".cache" / "trustreel" / "kafka",
        description="Where `broker start` keeps Kafka jars, config, data and logs",
    )
    broker_port: int = Field(default=9092, ge=1, le=65535)

    @property
    def consumer_group(self) -> str:
        """The group id, distinct per topic prefix so isolated pipelines on one broker never share offsets."""
        return f"{self.group_id}-{self.topic_prefix}".rstrip("-.").replace(".", "-")

    @property
    def enrollment_backends(self) -> tuple[str, ...]:
        """The face backends cameo references are enrolled with: always the one the likeness stages use."""
        return tuple(dict.fromkeys((self.face_backend, *self.enrollment_face_backends)))

    @field_validator("stages", "enrollment_face_backends", mode="before")
    @classmethod
    def _split_stage_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("stages")
    @classmethod
    def _publish_is_last(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or value[-1] != "publish":
            raise ValueError("the stage list must end with 'publish' (the final consent re-check)")
        if len(set(value)) != len(value):
            raise ValueError("a stage may appear once in the stage list")
        return value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> "Settings":
        if self.kafka_security_protocol.startswith("SASL") and (
                not self.kafka_username or (self.kafka_password is None and self.kafka_password_file is None)):
            raise ValueError(f"TRUSTREEL_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                             "TRUSTREEL_KAFKA_USERNAME and TRUSTREEL_KAFKA_PASSWORD_FILE (or _PASSWORD)")
        if self.kafka_key_file is not None and self.kafka_cert_file is None:
            raise ValueError("TRUSTREEL_KAFKA_KEY_FILE needs TRUSTREEL_KAFKA_CERT_FILE")
        return self

    @field_validator("enrollment_face_backends")
    @classmethod
    def _known_face_backends(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [backend for backend in value if backend not in ("dlib", "insightface")]
        if unknown:
            raise ValueError(f"unknown face backend(s) {', '.join(unknown)}; use dlib or insightface")
        return value


def import_named(target: str) -> Any:
    """The object a `package.module:attribute` setting names (a plug-in factory, a signing function).

    Raises ValueError, naming the target, when it is not of that form or cannot be imported.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{target!r} is not of the form package.module:attribute")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{target} cannot be imported: {exc}") from exc


def load_settings(**overrides: object) -> Settings:
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
