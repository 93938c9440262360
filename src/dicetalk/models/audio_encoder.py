"""The audio side shared by the denoiser's audio path and the emotion embedder: Whisper hidden states per video frame.

The released Sonic/DICE-Talk recipe, reproduced here:

1. the 16 kHz waveform is cut into Whisper chunks (30 s for whisper-tiny; ``2 * max_source_positions``
   mel frames at 100 Hz in general) and each chunk is turned into a log-mel spectrogram;
2. the Whisper *encoder* runs on every chunk and **all** its hidden states are kept (the embedding
   output plus every layer, ``L + 1`` of them; 5 x 384 for whisper-tiny) at its 50 Hz feature rate;
3. the chunks are concatenated and trimmed to the video length (2 feature frames per video frame at
   25 fps);
4. video frame ``i`` sees a window of 10 feature frames around it (:func:`frame_windows`), which the
   audio projection (:class:`~dicetalk.models.token_projection.TokenProjection`) maps to tokens;
   the emotion embedder's audio stream takes one vector per frame instead (:func:`frame_features`).

The encoder is a stock ``transformers`` ``WhisperEncoder``: randomly initialised from a config by
:func:`build_audio_encoder` (the small configurations are trained from scratch on the synthetic world),
or loaded from whisper-tiny / our own folders by :func:`load_audio_encoder`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel  # noqa: F401  (diffusers finds a component's loader by base-class names in its module)
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..errors import WeightsError

SAMPLE_RATE = 16_000  # Whisper's input rate
MEL_HOP = 160  # samples per mel frame (100 Hz)
FEATURE_RATE = 50.0  # encoder outputs per second (conv2 has stride 2)
SAMPLES_PER_FEATURE = int(SAMPLE_RATE / FEATURE_RATE)  # 320
WINDOW = 10  # feature frames per video frame in the released recipe
WINDOW_LEFT = 4  # ... of which this many precede the frame's first feature row

__all__ = [
    "build_audio_encoder",
    "encode_audio",
    "feature_length",
    "frame_features",
    "frame_rows",
    "frame_windows",
    "load_audio_encoder",
    "whisper_feature_extractor",
]


# --------------------------------------------------------------------------------------------- model


class AudioEncoder(WhisperEncoder):
    """transformers' ``WhisperEncoder``, unchanged, under a name this package exports.

    diffusers resolves pipeline components by library and class name, and transformers does not
    export ``WhisperEncoder`` at top level; this subclass lets ``DiceTalkPipeline`` save and load it.
    """


def build_audio_encoder(whisper_config_kwargs: dict[str, Any] | WhisperConfig) -> AudioEncoder:
    """A randomly initialised Whisper encoder for a configuration's ``audio_encoder`` entry.

    The kwargs describe a whole ``WhisperConfig`` (decoder fields included, so the same dict can build
    a full ``WhisperModel``); only the encoder is instantiated. Small configurations must keep their
    token ids inside their small vocabulary, which the named configurations already do. The module
    is trainable as built: freeze it (``requires_grad_(False)``) where the recipe says so.
    """
    config = whisper_config_kwargs
    if not isinstance(config, WhisperConfig):
        config = WhisperConfig(**config)
    return AudioEncoder(config)


def load_audio_encoder(
    path: str | Path,
    dtype: torch.dtype | None = None,
    freeze: bool = True,
) -> WhisperEncoder:
    """The Whisper encoder stored in ``path``.

    ``path`` may be a folder written by ``WhisperEncoder.save_pretrained`` (ours) or a full
    ``WhisperModel`` / ``WhisperForConditionalGeneration`` checkpoint such as OpenAI's whisper-tiny,
    which the DICE-Talk release ships; the latter's ``.encoder`` is returned and the decoder dropped.
    ``freeze`` (default, as in the paper: a pretrained Whisper stays frozen) switches the encoder to
    eval mode and turns its gradients off. Raises :class:`~dicetalk.errors.WeightsError` for a
    missing or malformed folder, or one whose weights do not cover the whole encoder.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise WeightsError(
            f"audio encoder folder {str(folder)!r} does not exist (expected whisper-tiny or a saved WhisperEncoder)"
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise WeightsError(f"audio encoder folder {str(folder)!r} has no config.json; is it a Whisper checkpoint?")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read {str(config_file)!r}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("model_type") != "whisper":
        kind = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise WeightsError(f"{str(config_file)!r} describes a {kind!r} model, not Whisper")

    # Encoder-only folders (ours) store unprefixed keys; full checkpoints store ``[model.]encoder.*``.
    # Try the class the config names first, the other one second, and keep the first that covers the
    # whole encoder: transformers would otherwise silently re-initialise what it cannot find.
    encoder_only = bool({"WhisperEncoder", "AudioEncoder"} & set(raw.get("architectures") or []))
    attempts = ("encoder", "full") if encoder_only else ("full", "encoder")
    kwargs = {} if dtype is None else {"dtype": dtype}
    problems = []
    for attempt in attempts:
        try:
            if attempt == "encoder":
                encoder, info = AudioEncoder.from_pretrained(folder, output_loading_info=True, **kwargs)
                missing = sorted(info["missing_keys"])
            else:
                model, info = WhisperModel.from_pretrained(folder, output_loading_info=True, **kwargs)
                # Re-home the weights in our exported class so pipelines can save it by name.
                encoder = AudioEncoder(model.config).to(model.encoder.dtype)
                encoder.load_state_dict(model.encoder.state_dict())
                del model
                missing = sorted(k for k in info["missing_keys"] if k.startswith("encoder."))
        except Exception as exc:  # OSError (no weights), SafetensorError, size mismatches...
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "mismatched_sizes" in first_line:  # transformers points at a log report instead
                first_line = "its weights do not have the shapes its config.json describes"
            raise WeightsError(f"cannot load the Whisper encoder from {str(folder)!r}: {first_line}") from None
        if not missing:
            break
        problems.append(f"{len(missing)} encoder weights missing (e.g. {missing[0]})")
    else:
        raise WeightsError(f"{str(folder)!r} does not hold a complete Whisper encoder: {problems[0]}")
    if freeze:
        encoder.requires_grad_(False).eval()
    return encoder


def whisper_feature_extractor(encoder_config: WhisperConfig | dict[str, Any] | torch.nn.Module) -> WhisperFeatureExtractor:
    """The log-mel front end matching an encoder (built offline, no download).

    Whisper's encoder accepts exactly ``2 * max_source_positions`` mel frames (100 Hz), so the chunk
    length is ``2 * max_source_positions / 100`` seconds: 30 s at full size, 2 s for ``tiny``, 5 s
    for ``synthetic``. The feature extractor takes whole seconds, hence the check.
    """
    if isinstance(encoder_config, torch.nn.Module):
        encoder_config = encoder_config.config
    if isinstance(encoder_config, dict):
        encoder_config = WhisperConfig(**encoder_config)
    mel_frames = 2 * encoder_config.max_source_positions
    chunk_samples = mel_frames * MEL_HOP
    if chunk_samples % SAMPLE_RATE:
        raise ValueError(
            f"max_source_positions={encoder_config.max_source_positions} gives {chunk_samples / SAMPLE_RATE} s chunks; "
            "use a multiple of 50 (whole-second chunks)"
        )
    return WhisperFeatureExtractor(
        feature_size=encoder_config.num_mel_bins,
        sampling_rate=SAMPLE_RATE,
        hop_length=MEL_HOP,
        chunk_length=chunk_samples // SAMPLE_RATE,
        n_fft=400,
    )


# ------------------------------------------------------------------------------------------ encoding


def feature_length(num_frames: int, fps: float = 25.0) -> int:
    """Number of 50 Hz feature frames covering ``num_frames`` video frames (``2 * num_frames`` at 25 fps)."""
    # The epsilon keeps e.g. 3 frames at 30 fps (exactly 5.0 rows) from rounding up to 6.
    return max(1, math.ceil(num_frames * FEATURE_RATE / fps - 1e-6))


def frame_rows(num_frames: int, fps: float = 25.0, device: torch.device | str | None = None) -> torch.Tensor:
    """First feature row of each video frame, ``round(i * 50 / fps)`` (Python rounding), as a long tensor."""
    i = torch.arange(num_frames, device=device, dtype=torch.float64)
    return torch.round(i * (FEATURE_RATE / fps)).long()


def _as_waveform(waveform: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().to("cpu", torch.float32).numpy()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2 and 1 in waveform.shape:
        waveform = waveform.reshape(-1)
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono 16 kHz waveform of shape (samples,), got shape {waveform.shape}")
    return waveform


def encode_audio(
    encoder: WhisperEncoder,
    feature_extractor: WhisperFeatureExtractor,
    waveform_16k: np.ndarray | torch.Tensor,
    num_frames: int,
    fps: float = 25.0,
    requires_grad: bool = False,
    chunk_batch_size: int | None = None,
) -> torch.Tensor:
    """All Whisper hidden states of a waveform at 50 Hz, trimmed to a video of ``num_frames`` frames.

    Returns ``(T50, L + 1, C)`` with ``T50 = feature_length(num_frames, fps)`` (``2 * num_frames`` at
    25 fps), ``L + 1`` hidden states (embedding output, then every layer; the last one is the
    encoder's layer-normed output) and ``C = d_model``, on the encoder's device and dtype.

    Audio of any length works: it is cut into the encoder's fixed chunks, every chunk goes through
    the encoder in one batched forward (``chunk_batch_size`` bounds the batch for very long audio),
    and the results are concatenated. Audio shorter than the video is padded with silence, as the
    feature extractor pads every chunk; chunks that lie wholly after the video are not computed.
    The encoder runs without gradients unless ``requires_grad`` (to fine-tune it).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    waveform = _as_waveform(waveform_16k)
    rows = feature_length(num_frames, fps)
    positions = encoder.config.max_source_positions
    chunk_samples = feature_extractor.n_samples
    if chunk_samples != 2 * positions * MEL_HOP:
        raise ValueError(
            f"feature extractor chunks of {chunk_samples} samples do not match the encoder "
            f"({2 * positions * MEL_HOP}); build it with whisper_feature_extractor(encoder.config)"
        )
    num_chunks = math.ceil(rows / positions)
    # Pad with silence (what the extractor would do) or drop whole chunks past the video; cutting a
    # chunk short would change what the encoder attends to inside it.
    padded = np.zeros(num_chunks * chunk_samples, dtype=np.float32)
    keep = min(len(waveform), len(padded))
    padded[:keep] = waveform[:keep]
    chunks = padded.reshape(num_chunks, chunk_samples)
    param = next(encoder.parameters())

    # Mel spectrograms and encoder activations exist for one batch of chunks at a time, so
    # ``chunk_batch_size`` bounds the memory of any length of audio.
    step = chunk_batch_size or num_chunks
    outputs = []
    with torch.set_grad_enabled(requires_grad and torch.is_grad_enabled()):
        for start in range(0, num_chunks, step):
            batch = list(chunks[start : start + step])
            mel = feature_extractor(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            hidden = encoder(mel.to(param.device, param.dtype), output_hidden_states=True).hidden_states
            outputs.append(torch.stack(hidden, dim=2))  # (chunks, positions, L+1, C)
    hidden = torch.cat(outputs, dim=0).flatten(0, 1)  # chunks end to end along time
    return hidden[:rows]


# ------------------------------------------------------------------------------- per-frame views


def frame_windows(
    hidden: torch.Tensor,
    num_frames: int,
    fps: float = 25.0,
    window: int = WINDOW,
    left: int = WINDOW_LEFT,
    frames: slice | None = None,
) -> torch.Tensor:
    """The audio window of every video frame: ``(T50, *rest) -> (num_frames, window, *rest)``.

    ``frames`` selects a range of the video's frames (e.g. one denoising window): only their
    windows are gathered.

    As released (Sonic/DICE-Talk): the features are zero-padded with ``left`` rows before and
    ``window - left`` after, and frame ``i`` takes padded rows ``[r_i, r_i + window)``, i.e. feature
    frames ``r_i - left .. r_i + window - left - 1``, with ``r_i = 2 i`` at 25 fps and
    ``round(i * 50 / fps)`` otherwise. Rows past the end of ``hidden`` read as zeros. Gathered in one
    indexing operation.
    """
    if not 0 <= left <= window:
        raise ValueError(f"need 0 <= left <= window, got left={left}, window={window}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    starts = frame_rows(num_frames, fps, device=hidden.device)
    if frames is not None:
        starts = starts[frames]
    index = starts[:, None] + torch.arange(window, device=hidden.device)[None]  # (F, window), padded rows
    # ``window - left`` zero rows after, as released; more if ``hidden`` is shorter than the video.
    right = max(window - left, int(index.max()) + 1 - left - hidden.shape[0])
    pad = [0, 0] * (hidden.ndim - 1) + [left, right]  # F.pad lists dimensions last to first
    padded = F.pad(hidden, pad)
    return padded[index]


def frame_features(hidden: torch.Tensor, num_frames: int, fps: float = 25.0, layer: int = -1) -> torch.Tensor:
    """One audio vector per video frame for the emotion embedder: ``(T50, L+1, C) -> (num_frames, C)``.

    Hidden state ``layer`` (the encoder output by default; ``hidden`` may also be ``(T50, C)``)
    averaged over the feature frames of each video frame, rows ``[r_i, r_{i+1})`` (the 2 rows
    ``2i, 2i+1`` at 25 fps; at least one row at any frame rate). Rows past the end of ``hidden``
    read as zeros. Gathered in one indexing operation (no running sums: exact for any length).
    """
    if hidden.ndim == 3:
        hidden = hidden[:, layer]
    if hidden.ndim != 2:
        raise ValueError(f"expected hidden states of shape (T50, L+1, C) or (T50, C), got {tuple(hidden.shape)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    bounds = frame_rows(num_frames + 1, fps, device=hidden.device)
    starts = bounds[:-1]
    counts = torch.clamp(bounds[1:] - starts, min=1)  # above 50 fps neighbouring frames share a row
    offsets = torch.arange(int(counts.max()), device=hidden.device)
    index = starts[:, None] + offsets[None]  # (F, K)
    valid = offsets[None] < counts[:, None]
    needed = int(index.max()) + 1
    if hidden.shape[0] < needed:
        hidden = F.pad(hidden, [0, 0, 0, needed - hidden.shape[0]])
    picked = hidden[index] * valid[..., None].to(hidden.dtype)  # (F, K, C)
    return picked.sum(1) / counts[:, None].to(hidden.dtype)
