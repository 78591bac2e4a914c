"""Video generation on torch + diffusers: a pipeline named by config, loaded once per worker.

    GeneratorConfig(pipeline class, image-to-video class, model id, device, dtype, audio pipeline,
                    attention backend, torch.compile)
      -> DiffusersVideoGenerator.load()   (first use; CUDA + half precision when present, else CPU float32)
           the image-to-video pipeline shares the text pipeline's components as they are (one copy of the
           weights, their dtype untouched: diffusers' `from_pipe` casts shared weights to float32)
      -> generate([GenerationJob, ...])   one pipeline call for a batch of compatible jobs
           prompts, seeds (one torch.Generator each), conditioning images (cameo references) when any
           a deadline is checked between denoising steps (GenerationTimeout)
           frames turned to uint8 on the device, so only a quarter of the bytes cross to the CPU
      -> [GeneratedVideo(frames uint8, audio or None), ...]

The model id may be a hub id or a local directory (tests build a tiny random pipeline in one).
"""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.media.video_files import AudioTrack


class GenerationTimeout(Exception):
    """Generation ran past its deadline and was stopped between denoising steps."""


@dataclass(frozen=True)
class RenderSpec:
    """Everything that must match for jobs to share one pipeline call (one GPU batch)."""

    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance_scale: float
    conditioned: bool


@dataclass(frozen=True)
class GenerationJob:
    request_id: str
    prompt: str
    negative_prompt: str
    seed: int
    spec: RenderSpec
    conditioning_image: np.ndarray | None = None  # RGB uint8, from the cameo registry's verified media


@dataclass
class GeneratedVideo:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    audio: AudioTrack | None
    timings: dict[str, float] = field(default_factory=dict)


class VideoGenerator(Protocol):
    def describe(self) -> dict[str, Any]:
        """Model id, pipeline classes, device and dtype: recorded with every decision for reproduction."""
        ...

    def generate(self, jobs: list[GenerationJob], deadline: float | None) -> list[GeneratedVideo]:
        """One video per job, in order. `deadline` is a time.monotonic() value."""
        ...


@dataclass(frozen=True)
class GeneratorConfig:
    model_id: str
    pipeline_class: str = "LTXPipeline"
    image_pipeline_class: str | None = "LTXImageToVideoPipeline"
    device: str = "auto"
    dtype: str = "auto"
    max_sequence_length: int = 128
    audio_pipeline_class: str | None = None
    audio_model_id: str | None = None
    audio_sample_rate: int = 16000
    public_name: str | None = None  # how manifests and the feed name the model (never its directory)
    public_version: str | None = None
    attention_backend: str | None = None  # a diffusers attention backend, e.g. "_native_cudnn", "flash"
    compile_transformer: bool = False  # torch.compile the denoiser (slow first call, faster afterwards)


def public_model_name(model_id: str, configured: str | None = None) -> str:
    """The model's name for public artefacts: the configured one, a hub id as is, or only the last part of
    a local directory (a server path, with its user and folder names, never leaves the machine)."""
    if configured:
        return configured
    path = Path(model_id).expanduser()
    if model_id.startswith(("/", ".", "~")) or path.exists():
        return path.name or "local model"
    return model_id


class DiffusersVideoGenerator:
    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._text_pipe: Any = None
        self._image_pipe: Any = None
        self._audio_pipe: Any = None
        self._device = ""
        self._dtype_name = ""
        self.load_seconds = 0.0

    def describe(self) -> dict[str, Any]:
        import diffusers
        import torch

        self.load()
        audio = self.config.audio_model_id
        return {"model_id": public_model_name(self.config.model_id, self.config.public_name),
                "model_version": self.config.public_version or "", "pipeline": self.config.pipeline_class,
                "image_pipeline": self.config.image_pipeline_class, "device": self._device,
                "dtype": self._dtype_name, "diffusers": diffusers.__version__, "torch": torch.__version__,
                "audio_pipeline": self.config.audio_pipeline_class,
                "audio_model_id": public_model_name(audio) if audio else None}

    def load(self) -> None:
        """Load the pipelines once; every later call reuses them (weights stay on the device)."""
        with self._lock:
            if self._text_pipe is not None:
                return
            import diffusers
            import torch

            quiet_model_libraries()
            started = time.perf_counter()
            device = self.config.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype_name = self.config.dtype
            if dtype_name == "auto":
                dtype_name = "float16" if device.startswith("cuda") else "float32"
            dtype = getattr(torch, dtype_name)
            pipeline_class = _diffusers_class(diffusers, self.config.pipeline_class)
            text_pipe = pipeline_class.from_pretrained(self.config.model_id, torch_dtype=dtype).to(device)
            self._install(text_pipe, device, dtype_name)
            if self.config.audio_pipeline_class:
                audio_class = _diffusers_class(diffusers, self.config.audio_pipeline_class)
                audio_pipe = audio_class.from_pretrained(self.config.audio_model_id or self.config.model_id,
                                                         torch_dtype=dtype).to(device)
                audio_pipe.set_progress_bar_config(disable=True)
                self._audio_pipe = audio_pipe
            self.load_seconds = time.perf_counter() - started

    def adopt(self, text_pipe: Any, device: str, dtype_name: str) -> None:
        """Use a pipeline built in memory (the full-size random one in bench/) through the same setup as a
        loaded one: tuned denoiser, image-to-video pipeline sharing its components."""
        with self._lock:
            self._install(text_pipe, device, dtype_name)

    def _install(self, text_pipe: Any, device: str, dtype_name: str) -> None:
        import diffusers

        text_pipe.set_progress_bar_config(disable=True)
        tune_denoiser(text_pipe, self.config)
        image_pipe = None
        if self.config.image_pipeline_class:
            image_pipe = sharing_pipeline(text_pipe, _diffusers_class(diffusers, self.config.image_pipeline_class))
        self._device, self._dtype_name = device, dtype_name
        self._text_pipe, self._image_pipe = text_pipe, image_pipe

    def generate(self, jobs: list[GenerationJob], deadline: float | None) -> list[GeneratedVideo]:
        import torch

        if not jobs:
            return []
        spec = jobs[0].spec
        if any(job.spec != spec for job in jobs):
            raise ValueError("a batch must share one RenderSpec")
        self.load()
        if spec.conditioned and self._image_pipe is None:
            raise ValueError("a cameo request needs an image-to-video pipeline; none is configured")
        pipe = self._image_pipe if spec.conditioned else self._text_pipe
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
        arguments: dict[str, Any] = {
            "prompt": [job.prompt for job in jobs], "negative_prompt": [job.negative_prompt for job in jobs],
            "width": spec.width, "height": spec.height, "num_frames": spec.num_frames,
            "num_inference_steps": spec.steps, "guidance_scale": spec.guidance_scale, "generator": generators,
            "output_type": "pt", "frame_rate": spec.fps, "fps": spec.fps,
            "max_sequence_length": self.config.max_sequence_length,
            "callback_on_step_end": _deadline_callback(deadline),
        }
        if spec.conditioned:
            from PIL import Image

            arguments["image"] = [Image.fromarray(job.conditioning_image) for job in jobs]
        started = time.perf_counter()
        with torch.inference_mode():
            output = pipe(**_accepted(pipe, arguments))
        frames = _to_uint8_videos(output.frames)
        video_seconds = time.perf_counter() - started
        audio, audio_seconds = self._audio_for(jobs, output, spec, generators, deadline)
        timings = {"video_seconds": round(video_seconds, 4), "audio_seconds": round(audio_seconds, 4),
                   "batch_size": len(jobs)}
        return [GeneratedVideo(frames=frames[index], audio=audio[index], timings=dict(timings))
                for index in range(len(jobs))]

    def _audio_for(self, jobs, output, spec: RenderSpec, generators, deadline) -> tuple[list, float]:
        """The video pipeline's own audio if it makes any, else the configured text-to-audio pipeline's."""
        started = time.perf_counter()
        produced = getattr(output, "audio", None)
        if produced is None:
            produced = getattr(output, "audios", None)
        rate = int(getattr(output, "audio_sample_rate", 0) or self.config.audio_sample_rate)
        if produced is None and self._audio_pipe is not None:
            seconds = spec.num_frames / spec.fps
            result = self._audio_pipe(**_accepted(self._audio_pipe, {
                "prompt": [job.prompt for job in jobs], "audio_length_in_s": seconds,
                "num_inference_steps": spec.steps, "generator": generators, "output_type": "np",
                "callback_on_step_end": _deadline_callback(deadline)}))
            produced = result.audios
        if produced is None:
            return [None] * len(jobs), 0.0
        tracks = []
        for samples in produced:
            array = np.asarray(samples.float().cpu() if hasattr(samples, "cpu") else samples, dtype=np.float32)
            tracks.append(AudioTrack(samples=array.reshape(-1, array.shape[-1]), sample_rate=rate))
        return tracks, time.perf_counter() - started


def sharing_pipeline(pipe: Any, pipeline_class: Any) -> Any:
    """`pipeline_class` over `pipe`'s own components: one copy of the weights, each in the dtype and on the
    device it has. Not `from_pipe`, which casts the shared modules to its `torch_dtype` (float32 unless told),
    so the half-precision text pipeline ran in float32 afterwards: 3.4 s a video became 24 s on an H200."""
    expected, optional = pipeline_class._get_signature_keys(pipeline_class)
    components = {name: component for name, component in pipe.components.items() if name in expected}
    missing = set(expected) - set(components) - set(getattr(pipeline_class, "_optional_components", []))
    if missing:
        raise ValueError(f"{pipeline_class.__name__} needs {sorted(missing)}, which {type(pipe).__name__} lacks")
    options = {name: pipe.config[name] for name in optional if name in pipe.config}
    shared = pipeline_class(**components, **options)
    shared.set_progress_bar_config(disable=True)
    return shared


def tune_denoiser(pipe: Any, config: GeneratorConfig) -> None:
    """The configured attention backend and torch.compile on the denoiser (transformer or unet), which the
    image-to-video pipeline shares. Both are opt-in: they depend on the GPU and the installed kernels."""
    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if denoiser is None:
        return
    if config.attention_backend:
        denoiser.set_attention_backend(config.attention_backend)
    if config.compile_transformer:
        denoiser.compile()


def _diffusers_class(diffusers: Any, name: str) -> Any:
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"diffusers {diffusers.__version__} has no pipeline class '{name}'")
    return cls


def _accepted(pipe: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """Only the arguments this pipeline's __call__ takes: pipeline families name their options differently."""
    parameters = inspect.signature(pipe.__call__).parameters
    return {name: value for name, value in arguments.items() if name in parameters and value is not None}


def _deadline_callback(deadline: float | None):
    if deadline is None:
        return None

    def check(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if time.monotonic() > deadline:
            raise GenerationTimeout(f"stopped after denoising step {step + 1}: past the time limit")
        return tensors

    return check


def _to_uint8_videos(videos: Any) -> list[np.ndarray]:
    """[T, H, W, 3] uint8 per video. A tensor batch ([B, T, C, H, W] in [0, 1]) is converted where it lies,
    so the GPU does the scaling and a quarter of the bytes come back to the CPU."""
    if hasattr(videos, "permute") and getattr(videos, "ndim", 0) == 5:
        import torch

        scaled = torch.nan_to_num(videos.float(), nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_()
        return list(scaled.to(torch.uint8).permute(0, 1, 3, 4, 2).contiguous().cpu().numpy())
    return [_to_uint8_frames(video) for video in videos]


def _to_uint8_frames(video: Any) -> np.ndarray:
    if hasattr(video, "permute"):  # one [T, C, H, W] tensor
        video = video.float().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(video, (list, tuple)):  # PIL images
        video = np.stack([np.asarray(frame.convert("RGB")) for frame in video])
    array = np.asarray(video)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return array


def quiet_model_libraries() -> None:
    """No progress bars or load-time advice from diffusers and transformers in a worker's log: loading
    is reported once by our own line, and their warnings (e.g. float32 modules: none) are not actionable."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.disable_progress_bar()
        library.utils.logging.set_verbosity_error()
