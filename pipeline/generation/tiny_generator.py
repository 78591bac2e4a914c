"""A tiny, randomly initialised LTX-Video pipeline built from configs: no download, seconds on a CPU.

Tests, the demo and the benchmarks need real diffusers generation without model weights, so this
writes a complete pipeline directory (model_index.json, transformer, VAE, T5 text encoder, a
word-level tokenizer, scheduler) that loads through the same `from_pretrained` path as a real
model. Its output is noise shaped like a video: right frame count, size and timing, no meaning.

    trustreel generator tiny DIR  ->  TRUSTREEL_GENERATOR_MODEL=DIR
"""

from __future__ import annotations

from pathlib import Path

TINY_MODEL_VERSION = "2"
"""Bumped whenever the configs below change, so a directory built by older code is rebuilt, not reused."""
VERSION_FILE = "trustreel-tiny-version.txt"

TINY_WORDS = ("a an the of in on at with and person people cat dog dance dances walks runs beach city "
              "forest night day sunset rain snow robot car boat sea mountain video scene smiling friends").split()


def build_tiny_ltx(directory: Path, seed: int = 0) -> Path:
    """Write the tiny pipeline to `directory` (created); returns it. The same seed gives the same weights."""
    import torch

    from pipeline.generation.generator import quiet_model_libraries

    quiet_model_libraries()
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    directory = Path(directory)
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
        attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=32)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1, 1, 1, 1), timestep_conditioning=False,
        patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    tokenizer = word_tokenizer()
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                           num_heads=4, relative_attention_num_buckets=8))
    pipeline = LTXPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                           text_encoder=text_encoder, tokenizer=tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(directory)
    (directory / VERSION_FILE).write_text(TINY_MODEL_VERSION)
    return directory


def word_tokenizer():
    """A word-level tokenizer over TINY_WORDS: T5's real one is a download."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TINY_WORDS:
        vocabulary.setdefault(word, len(vocabulary))
    word_level = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    word_level.normalizer = normalizers.Lowercase()
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=128)


def full_size_random_ltx(device: str, dtype_name: str):
    """An in-memory LTX-Video pipeline at the released model's sizes (diffusers' default configs: a 1.92B
    transformer and a 0.42B VAE) with random weights, for GPU benchmarks: the compute per step is the real
    model's, the output is noise. The text encoder is a one-layer random T5 of the real width (4096)."""
    import torch

    from pipeline.generation.generator import quiet_model_libraries

    quiet_model_libraries()
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    dtype = getattr(torch, dtype_name)
    tokenizer = word_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):  # initialised where they run: seconds on a GPU instead of minutes on a CPU
        transformer = LTXVideoTransformer3DModel().to(dtype)
        vae = AutoencoderKLLTXVideo().to(dtype)
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=10240,
                                               num_layers=1, num_heads=64)).to(dtype)
    return LTXPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                       text_encoder=text_encoder, tokenizer=tokenizer)


def is_current_tiny_model(directory: Path) -> bool:
    """True when `directory` holds a tiny pipeline built by this version of the code."""
    marker = Path(directory) / VERSION_FILE
    return (Path(directory) / "model_index.json").exists() and marker.exists() and \
        marker.read_text().strip() == TINY_MODEL_VERSION
