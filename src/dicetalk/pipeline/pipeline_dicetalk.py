"""DiceTalkPipeline: portrait + speech + emotion -> talking-head frames.

The data path (every choice named here is a field of the :class:`~.recipe.SamplingRecipe`):

1. the portrait is resized (LANCZOS) to the recipe's size; it gives VAE latents (concatenated to every
   noisy frame on channels; ``noise_aug`` pixel noise first) and a CLIP image embedding;
2. speech goes through the Whisper encoder; each generated frame takes a window of 10 feature frames x
   all hidden states, projected to audio tokens (computed once for the whole video);
3. the emotion prior of each frame goes through the emotion bank (attention over every code) to
   emotion tokens (once for the whole video);
4. the face mask goes through the mask encoder (added after the UNet's input convolution) and, for
   models that gate their condition attention by the face, to the UNet's spatial cross-attention;
5. EDM sampling with the recipe's scheduler (:mod:`.schedulers`) over windows of frames moved at every
   step (``blend`` or the release's ``circular`` layout, :mod:`.windows`), window estimates averaged in
   latent space; a guided step runs the guidance branches (nothing / image / [image + audio /]
   image + audio + emotion) of a window in one batched UNet call through
   :func:`~dicetalk.models.denoiser.denoise`, the same function training uses;
6. chunked VAE decoding (and the reference refiner, if the model has one), then frame interpolation when
   the recipe generates fewer frames than it outputs, streamed to the caller so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

from .. import edm
from ..errors import InputError
from ..models.audio_encoder import encode_audio, frame_features, frame_windows
from ..models.denoiser import DenoiserConditions, denoise, time_ids
from ..utils.pixels import clip_input, resize, resize_mask, to_pixels, to_uint8
from .performance import GraphedUNet, PerformanceOptions, apply_to_modules, attention_context
from .recipe import RECIPE_KEY, SamplingRecipe
from .schedulers import SCHEDULERS, EDMEulerScheduler, sample, scheduler_for
from .streaming import ChunkDecoder, GeneratorSteps, StreamOptions, plan_segments, segment_windows
from .windows import WindowPlan, plan_windows

OUTPUT_TYPES = ("np", "pil", "pt", "latent")
SAMPLE_RATE = 16000
TOKEN_CHUNK = 256  # frames per audio-projection / emotion-bank call when tokens are precomputed


@dataclass
class DiceTalkPipelineOutput(BaseOutput):
    frames: np.ndarray | list | torch.Tensor | None  # see ``output_type``; None when frames were streamed to a sink
    fps: float
    num_frames: int


@dataclass
class _Conditions:
    """Everything about one video that does not change across denoising steps."""

    image_latents: torch.Tensor  # (1, C, h, w) unscaled, noise-augmented reference latents
    reference_latents: torch.Tensor | None  # (1, C, h, w) scaled latents of the clean reference (init_from_reference)
    image_embeds: torch.Tensor  # (1, 1, D)
    mask_features: torch.Tensor  # (1, C0, h, w)
    face_mask: torch.Tensor  # (1, 1, H, W) in [0, 1]
    audio_tokens: torch.Tensor  # (total, T, D): every frame's, null tokens on padding frames
    emotion_tokens: torch.Tensor  # (total, T, D)
    null_audio_tokens: torch.Tensor  # (T, D)
    null_emotion_tokens: torch.Tensor  # (T, D)
    time_ids: tuple[float, float, float]
    pixels: torch.Tensor  # (1, 3, H, W) the resized portrait in [-1, 1] (the refiner's reference)
    constants: dict = field(default_factory=dict)  # small device tensors made once per video (no host sync per step)

    def constant(self, key, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self.constants:
            self.constants[key] = make()
        return self.constants[key]


class DiceTalkPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->audio_encoder->audio_projection->emotion_bank->mask_encoder->unet->vae->refiner"
    _optional_components = ["emotion_embedder", "expression_encoder", "discriminator", "refiner", "frame_interpolator"]
    _callback_tensor_inputs = ["latents", "denoised"]

    def __init__(
        self,
        unet,
        vae,
        image_encoder,
        audio_encoder,
        audio_feature_extractor,
        audio_projection,
        mask_encoder,
        emotion_bank,
        priors,
        scheduler,
        emotion_embedder=None,
        expression_encoder=None,
        discriminator=None,
        refiner=None,
        frame_interpolator=None,
        recipe: dict | None = None,
        face_layout: dict | None = None,
    ):
        super().__init__()
        self.register_modules(
            unet=unet,
            vae=vae,
            image_encoder=image_encoder,
            audio_encoder=audio_encoder,
            audio_feature_extractor=audio_feature_extractor,
            audio_projection=audio_projection,
            mask_encoder=mask_encoder,
            emotion_bank=emotion_bank,
            priors=priors,
            scheduler=scheduler,
            emotion_embedder=emotion_embedder,
            expression_encoder=expression_encoder,
            discriminator=discriminator,
            refiner=refiner,
            frame_interpolator=frame_interpolator,
        )
        # Where the training faces sit in the frame (None: real faces, framed by the release's crop rule).
        self.register_to_config(face_layout=face_layout)
        # The sampling recipe this model was tuned for (saved in model_index.json); the scheduler names its sampler.
        self.set_recipe(SamplingRecipe.from_dict(recipe, "model_index.json") if recipe else SamplingRecipe(sampler=_sampler_of(scheduler)))

    # ------------------------------------------------------------------ recipe and geometry
    @property
    def recipe(self) -> SamplingRecipe:
        return SamplingRecipe.from_dict(self.config[RECIPE_KEY], "model_index.json")

    def set_recipe(self, recipe: SamplingRecipe) -> None:
        """Make ``recipe`` the model's own (saved with it); the scheduler follows its sampler."""
        self.register_to_config(**{RECIPE_KEY: recipe.validated().to_dict()})
        if not isinstance(self.scheduler, SCHEDULERS[recipe.sampler]):
            self.register_modules(scheduler=scheduler_for(recipe.sampler, self.scheduler))

    @property
    def face_layout(self):
        """The :class:`~dicetalk.utils.faces.FaceLayout` of the model's training faces, or None (real faces)."""
        from ..utils.faces import FaceLayout

        return FaceLayout.from_dict(self.config.face_layout) if self.config.face_layout else None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Frame sides must be multiples of this: the VAE's factor times the UNet's downsampling."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def window(self) -> int:
        return int(self.unet.config.num_frames)

    def frame_size(self, image_hw: tuple[int, int], recipe: SamplingRecipe, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """(height, width) of the frames: explicit, or the recipe's short side (the portrait's aspect,
        each side rounded to the size multiple, as the release does), or the model's native square."""
        m = self.size_multiple
        if height is not None or width is not None:
            height, width = height or width, width or height
            if height % m or width % m or min(height, width) < m:
                raise InputError(f"height and width must be positive multiples of {m} for this model, got {height}x{width}")
            return int(height), int(width)
        if recipe.size is None:
            return self.native_size, self.native_size
        h, w = image_hw
        scale = recipe.size / min(h, w)
        return max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m)

    # ------------------------------------------------------------------ conditions
    def encode_image(self, pixels: torch.Tensor, recipe: SamplingRecipe, generator: torch.Generator | None):
        """(conditioning latents, scaled clean latents or None) of the reference pixels (1, 3, H, W)."""
        vae = self.vae
        noise = torch.randn(pixels.shape, generator=generator, dtype=torch.float32).to(pixels.device)
        dtype = torch.float32 if vae.config.get("force_upcast", False) and vae.dtype == torch.float16 else vae.dtype
        with _vae_dtype(vae, dtype):
            latents = vae.encode((pixels + recipe.noise_aug * noise).to(dtype)).latent_dist.mode()  # unscaled, as SVD
            clean = None
            if recipe.init_from_reference:
                clean = latents if recipe.noise_aug == 0 else vae.encode(pixels.to(dtype)).latent_dist.mode()
                clean = clean.float() * vae.config.scaling_factor
        return latents.to(self.unet.dtype), clean

    def face_mask_input(self, mask: np.ndarray | None, height: int, width: int) -> torch.Tensor:
        """(1, 1, H, W) face mask in [0, 1] from a uint8/float mask of any size; None: the central 3/4."""
        if mask is None:
            out = np.zeros((height, width), np.float32)
            mh, mw = height // 8, width // 8
            out[mh : height - mh, mw : width - mw] = 1.0
        else:
            out = resize_mask(mask, height, width)
        return torch.from_numpy(out)[None, None].to(self.device)

    def audio_hidden(self, audio: np.ndarray, num_frames: int, recipe: SamplingRecipe) -> torch.Tensor:
        """Whisper hidden states at 50 Hz over the speech (at least the video's span)."""
        frames_out = max(recipe.output_frames(num_frames), int(len(audio) * recipe.fps // SAMPLE_RATE))
        chunk_seconds = self.audio_feature_extractor.n_samples / self.audio_feature_extractor.sampling_rate
        return encode_audio(
            self.audio_encoder, self.audio_feature_extractor, audio, frames_out, recipe.fps, chunk_batch_size=max(1, int(4 // chunk_seconds))
        )

    def frame_audio_tokens(self, hidden: torch.Tensor, num_frames: int, fps: float) -> torch.Tensor:
        """Audio tokens of every generated frame, (num_frames, T, D)."""
        proj = self.audio_projection
        out = [
            proj(frame_windows(hidden, num_frames, fps=fps, frames=slice(s, s + TOKEN_CHUNK)).to(hidden.device, proj.dtype))
            for s in range(0, num_frames, TOKEN_CHUNK)
        ]
        return torch.cat(out).to(self.unet.dtype)

    def frame_emotion_tokens(self, priors: torch.Tensor) -> torch.Tensor:
        """Emotion tokens of every frame's prior, (F, T, D), attending to the whole bank."""
        bank = self.emotion_bank
        kv = bank.bank_keys_values() if bank.config.use_bank else None
        priors = priors.to(bank.device, bank.dtype)
        out = [bank(priors[s : s + TOKEN_CHUNK][None], use_bank=True, bank=kv).tokens[0] for s in range(0, len(priors), TOKEN_CHUNK)]
        return torch.cat(out).to(self.unet.dtype)

    def null_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio tokens of silence-free zero features, tokens of a dropped emotion), each (T, D)."""
        p = self.audio_projection.config
        zero_window = torch.zeros(1, p.seq_len, p.blocks, p.channels, device=self.device, dtype=self.audio_projection.dtype)
        bank = self.emotion_bank
        zero_prior = torch.zeros(1, 1, bank.config.prior_dim, device=self.device, dtype=bank.dtype)
        dropped = bank(zero_prior, use_bank=True, drop=torch.ones(1, dtype=torch.bool, device=self.device))
        return self.audio_projection(zero_window)[0].to(self.unet.dtype), dropped.tokens[0, 0].to(self.unet.dtype)

    def image_embeds(self, portrait: np.ndarray) -> torch.Tensor:
        """(1, 1, D) the CLIP image embedding of a uint8 (H, W, 3) portrait, in the UNet's dtype."""
        clip = clip_input(portrait, self.image_encoder.config.image_size).to(self.device, self.image_encoder.dtype)
        return self.image_encoder(clip).image_embeds[:, None].to(self.unet.dtype)

    def prepare_conditions(
        self,
        image,
        audio: np.ndarray,
        priors: torch.Tensor,
        recipe: SamplingRecipe,
        face_mask: np.ndarray | None,
        size: tuple[int, int],
        padding: int,
        generator: torch.Generator | None,
    ) -> _Conditions:
        height, width = size
        n = priors.shape[0]
        portrait = resize(_rgb(image), height, width)
        pixels = to_pixels(portrait).to(self.device)
        latents, clean = self.encode_image(pixels, recipe, generator)
        embeds = self.image_embeds(portrait)
        mask = self.face_mask_input(face_mask, height, width)
        mask_features = self.mask_encoder(mask.expand(1, 3, height, width).to(self.mask_encoder.dtype)).to(self.unet.dtype)
        null_audio, null_emotion = self.null_tokens()
        audio_tokens = self.frame_audio_tokens(self.audio_hidden(audio, n, recipe), n, recipe.generated_fps)
        emotion_tokens = self.frame_emotion_tokens(priors)
        if padding:  # the release's null-conditioned frames after the video
            audio_tokens = torch.cat([audio_tokens, null_audio.expand(padding, -1, -1)])
            emotion_tokens = torch.cat([emotion_tokens, null_emotion.expand(padding, -1, -1)])
        return _Conditions(
            image_latents=latents,
            reference_latents=clean,
            image_embeds=embeds,
            mask_features=mask_features,
            face_mask=mask,
            audio_tokens=audio_tokens,
            emotion_tokens=emotion_tokens,
            null_audio_tokens=null_audio,
            null_emotion_tokens=null_emotion,
            time_ids=recipe.unet_time_ids(),
            pixels=pixels,
        )

    @torch.no_grad()
    def embed_reference_video(self, path) -> torch.Tensor:
        """The emotion prior (mean of the embedder's Gaussian) of a reference video ("Ours-V").

        Its frames give expression coefficients (expression encoder), its speech the audio stream.
        """
        from ..utils.media import read_video

        if self.emotion_embedder is None or self.expression_encoder is None:
            raise InputError("this model cannot embed reference videos (it has no emotion embedder / expression encoder); use an emotion label or a prior file")
        max_frames = int(self.emotion_embedder.config.max_frames)
        clip = read_video(path, max_frames=max_frames)
        n = clip.frames.shape[0]
        enc = self.expression_encoder
        expression = enc(to_pixels(clip.frames).to(self.device, enc.dtype))[None]
        audio = None
        if clip.audio is not None and np.abs(clip.audio).max() > 0:
            hidden = encode_audio(self.audio_encoder, self.audio_feature_extractor, clip.audio, n, clip.fps)
            audio = frame_features(hidden, n, clip.fps)[None].to(self.emotion_embedder.dtype)
        out = self.emotion_embedder.eval()(expression=expression.to(self.emotion_embedder.dtype), audio=audio, sample=False)
        return out.mu[0]

    # ------------------------------------------------------------------ performance
    @property
    def performance(self) -> PerformanceOptions:
        """The speed switches in force (:mod:`.performance`); the defaults unless :meth:`set_performance` was called."""
        return self.__dict__.get("_performance") or PerformanceOptions()

    def set_performance(self, options: PerformanceOptions | None = None) -> None:
        """Switch to ``options`` (None: the defaults), changing the UNet's and VAE's modules as they need."""
        new = (options or PerformanceOptions()).validated()
        apply_to_modules(self, self.performance, new)
        self.__dict__["_performance"] = new
        self.__dict__["_graphed"] = GraphedUNet(self.unet) if new.cuda_graphs else None

    def _denoiser(self):
        """The UNet as the sampler calls it: through CUDA graphs when they are on."""
        graphed = self.__dict__.get("_graphed")
        if graphed is None:
            return self.unet
        if graphed.unet is not self.unet:  # the UNet was replaced
            graphed = self.__dict__["_graphed"] = GraphedUNet(self.unet)
        return graphed

    # ------------------------------------------------------------------ denoising
    def _window_x0(self, x: torch.Tensor, sigma: torch.Tensor, index: torch.Tensor, cond: _Conditions, recipe: SamplingRecipe, guided: bool) -> torch.Tensor:
        """Guided denoised estimate of the windows ``index`` (nw, w) of ``x``: (nw, w, C, h, w).

        ``guided=False`` runs only the fully conditioned branch. Branches are stacked on the batch:
        [nothing,] image, [image + audio,] image + audio + emotion. At ``s_id = 1`` the unconditional
        estimate cancels (none + 1 * (image - none)) and is not computed; the image + audio branch
        only serves an audio scale of its own. Constant tensors (branch masks, time ids) are made once
        per video, so a call queues device work without waiting for it.
        """
        nw = index.shape[0]
        index = index.to(x.device, non_blocking=True)
        xs, audio, emotion = x[index], cond.audio_tokens[index], cond.emotion_tokens[index]
        s_id, s_ae, s_a = recipe.identity_scale, recipe.emotion_scale, recipe.audio_scale
        with_none = guided and s_id != 1.0
        with_audio = guided and s_a is not None and s_a != s_ae
        null_audio, null_emotion = cond.null_audio_tokens.expand_as(audio), cond.null_emotion_tokens.expand_as(emotion)
        image = [True] * (1 + guided + with_audio)  # branches that see the image
        audios = [audio] if not guided else [null_audio] * (1 + with_none) + [audio] * (len(image) - 1)
        emotions = [emotion] if not guided else [null_emotion] * (len(image) + with_none - 1) + [emotion]
        n = int(with_none) + len(image)
        kept = cond.constant(
            ("kept", with_none, len(image), nw),
            lambda: torch.tensor([False] * with_none + image).repeat_interleave(nw).to(x.device, non_blocking=True),
        )
        image_latents = cond.image_latents.expand(n * nw, -1, -1, -1) * kept.view(-1, 1, 1, 1).to(cond.image_latents.dtype)
        unet_time_ids = cond.constant(("time_ids", n * nw), lambda: time_ids(cond.time_ids, n * nw, None, self.unet.dtype).to(x.device, non_blocking=True))
        conditions = DenoiserConditions(
            image_latents=image_latents,
            image_embeds=cond.image_embeds.expand(n * nw, -1, -1) * kept.view(-1, 1, 1).to(cond.image_embeds.dtype),
            audio_tokens=torch.cat(audios),
            emotion_tokens=torch.cat(emotions),
            mask_features=cond.mask_features[:, None].expand(n * nw, index.shape[1], -1, -1, -1),
            time_ids=unet_time_ids,
            face_mask=cond.face_mask,
        )
        with attention_context(self.performance.attention):
            x0 = denoise(self._denoiser(), xs.repeat(n, 1, 1, 1, 1), sigma, conditions)[0].view(n, nw, *xs.shape[1:])
        if not guided:
            return x0[0]
        return edm.guided(
            x0[int(with_none)], x0[-1], s_ae, s_id, x0[0] if with_none else None, audio=x0[-2] if with_audio else None, audio_scale=s_a
        )

    @staticmethod
    def _plan_on_device(plan: WindowPlan, total: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(index, weights (w, 1, 1, 1), norm (total, 1, 1, 1)) of a plan on ``device``, made once per plan."""
        cache = plan.__dict__.setdefault("_on_device", {})
        key = (str(device), total)
        if key not in cache:
            index = plan.index.to(device, non_blocking=True)
            weights = plan.weights.to(device, non_blocking=True).view(-1, 1, 1, 1)
            norm = torch.zeros(total, 1, 1, 1, device=device)
            for rows in index:
                norm.index_add_(0, rows, weights)
            cache[key] = (index, weights, norm.clamp(min=1e-12))  # frames no window covers (segments) stay 0 / tiny
        return cache[key]

    def denoise_step(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        plan: WindowPlan,
        cond: _Conditions,
        recipe: SamplingRecipe,
        guided: bool,
        windows_per_batch: int = 1,
        on_window: Callable[[], None] | None = None,
        on_batch: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Denoised estimate of the whole video: window estimates averaged in latent space.

        ``on_batch(windows_done, estimate)``, after each batch of windows, gets the average so far
        (final for the frames whose windows are all done). No host sync: indices, weights and
        normalisation live on the device, made once per plan.
        """
        index, weights, norm = self._plan_on_device(plan, x.shape[0], x.device)
        acc = torch.zeros_like(x)
        for i in range(0, index.shape[0], windows_per_batch):
            batch = index[i : i + windows_per_batch]
            x0 = self._window_x0(x, sigma, batch, cond, recipe, guided)
            for rows, est in zip(batch, x0):
                acc.index_add_(0, rows, est * weights)
                if on_window is not None:
                    on_window()
            if on_batch is not None:
                on_batch(i + batch.shape[0], acc / norm)
        return acc / norm

    def prepare_latents(self, total: int, size: tuple[int, int], cond: _Conditions, scheduler, generator: torch.Generator | None) -> torch.Tensor:
        """Pure noise at the first level, or (``init_from_reference``) the reference latent plus that noise."""
        c = self.unet.config.out_channels
        h, w = (s // self.vae_scale_factor for s in size)
        noise = torch.randn((total, c, h, w), generator=generator, dtype=torch.float32)
        if cond.reference_latents is None:
            return (noise * scheduler.sigmas[0].cpu()).to(self.device)
        return scheduler.add_noise(cond.reference_latents.expand(total, -1, -1, -1), noise.to(self.device))

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        latents: torch.Tensor,
        chunk: int,
        sink: Callable[[torch.Tensor], None],
        reference: torch.Tensor | None = None,
        keep: int | None = None,
        batch: int = 1,
    ) -> None:
        """Decode (F, C, h, w) latents ``chunk`` frames at a time, handing float (n, 3, H, W) frames in
        [-1, 1] to ``sink``; ``keep``: hand over only the first ``keep`` frames (the rest only give the
        temporal decoder its context). ``reference``: the portrait's (1, 3, H, W) pixels for the
        reference refiner (if the model has one). ``batch``: chunks decoded in one VAE call (each
        chunk stays its own clip for the temporal decoder)."""
        keep = latents.shape[0] if keep is None else keep
        decoder = ChunkDecoder(self._decode_chunks(chunk, reference), chunk, latents.shape[0], keep, batch, lambda px: px, sink, latents.device, to_host=False)
        decoder.close(latents)

    def _decode_chunks(self, chunk: int, reference: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``latents (k * chunk or fewer, C, h, w) -> pixels``: the VAE's temporal decoder on clips of
        ``chunk`` frames, then the reference refiner (if the model has one and ``reference`` is given)."""
        scale = self.vae.config.scaling_factor

        def run(latents: torch.Tensor) -> torch.Tensor:
            z = (latents / scale).to(self.vae.dtype)
            pixels = self.vae.decode(z, num_frames=min(chunk, z.shape[0])).sample
            if self.refiner is not None and reference is not None:
                pixels = self.refiner(pixels.to(self.refiner.dtype).clamp(-1, 1), reference.to(self.refiner.dtype))
            return pixels

        return run

    def interpolate_stream(self, factor: int, sink: Callable[[torch.Tensor], None]) -> Callable[[torch.Tensor], None]:
        """A sink that inserts ``factor - 1`` interpolated frames between consecutive frames before ``sink``."""
        if factor == 1:
            return sink
        if self.frame_interpolator is None:
            raise InputError("this recipe interpolates frames, but the model has no frame interpolator (use interpolation=1)")
        last: list[torch.Tensor] = []

        def feed(frames: torch.Tensor) -> None:
            if not len(frames):
                return
            clip = torch.cat(last + [frames]) if last else frames
            unit = ((clip + 1) / 2).clamp(0, 1).to(self.frame_interpolator.dtype)
            out = self.frame_interpolator.interpolate(unit, factor=factor).float() * 2 - 1
            sink(out[1 if last else 0 :])  # the first frame of the clip was handed over with the last chunk
            last[:] = [frames[-1:]]

        return feed

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray | Image.Image,
        audio: np.ndarray,
        priors: torch.Tensor,
        recipe: SamplingRecipe | None = None,
        num_inference_steps: int | None = None,
        height: int | None = None,
        width: int | None = None,
        face_mask: np.ndarray | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        frame_sink: Callable[[np.ndarray], None] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        windows_per_batch: int | None = None,
        stream: StreamOptions | bool | None = None,
    ):
        """Generate one frame per row of ``priors`` (F, prior_dim), then interpolate to the recipe's fps.

        ``image``: the (cropped) portrait; ``audio``: mono float32 speech at 16 kHz covering the video;
        ``priors``: one emotion prior per generated frame (see :mod:`.emotion_condition`); ``recipe``: the
        sampling recipe (None: the model's own, :attr:`recipe`; ``num_inference_steps`` overrides its
        steps); ``height``/``width``: the frame size (default: the recipe's); ``face_mask``: the face
        region (uint8 0/255 or float in [0, 1], any size; None: the central region).

        ``output_type``: ``np`` (uint8 (N, H, W, 3)), ``pil`` (a list of images), ``pt`` (float (N, 3, H, W)
        in [0, 1]) or ``latent`` (the denoised (F, C, h, w) latents, not decoded). ``frame_sink``: receives
        uint8 frames chunk by chunk as they are decoded, instead of returning them (streaming).
        ``stream``: sample the video in segments, each handed over as soon as it is done (True or a
        :class:`~.streaming.StreamOptions`; see :mod:`.streaming`): the first frames come after the
        first segment instead of after the whole video, for a little more work and a result close to
        (not equal to) the whole-video one. ``windows_per_batch``: windows per UNet call (None: the
        :attr:`performance` options').
        ``callback_on_step_end(pipe, i, t, {"latents": ..., "denoised": ...})`` is called after every
        scheduler step (may return replaced ``latents``; not with ``stream``); ``progress(stage, done,
        total)`` as work advances: ``"encode"``, ``"denoise"`` (windows over every step), ``"decode"``
        (frames); an exception it raises stops the call.
        """
        recipe, stream, n = self._check_call(recipe, num_inference_steps, output_type, stream, callback_on_step_end, priors)
        report = progress or (lambda stage, done, total: None)
        size = self.frame_size(_rgb(image).shape[:2], recipe, height, width)
        window = min(self.window, n) if recipe.windows == "blend" else self.window
        padding = window if recipe.windows == "circular" else 0
        windows_per_batch = windows_per_batch or self.performance.windows_per_batch
        if stream is not None and generator is None:  # segments replay the generator's per-step states
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))

        report("encode", 0, 1)
        cond = self.prepare_conditions(image, audio, priors, recipe, face_mask, size, padding, generator)
        report("encode", 1, 1)
        output = _Output(self, n, recipe, output_type, frame_sink, report)
        decoder = None
        if output_type != "latent":
            reference = cond.pixels if self.refiner is not None else None
            decoder = ChunkDecoder(
                self._decode_chunks(recipe.decode_chunk, reference), recipe.decode_chunk, n + padding, n, self.performance.decode_batch,
                output.finish, output.deliver, self.device, overlap=self.performance.overlap_decode or stream is not None,
            )  # fmt: skip
        args = (cond, recipe, n, n + padding, window, size, generator, report, windows_per_batch)
        if stream is not None:
            latents = self._sample_stream(*args, stream, decoder)
        else:
            early = decoder if self.performance.overlap_decode and callback_on_step_end is None else None
            latents = self._sample(*args, callback_on_step_end, callback_on_step_end_tensor_inputs, early)
        cond.audio_tokens = cond.emotion_tokens = None  # sampled: the decoder needs only the portrait, not the per-frame tokens
        if decoder is not None:
            decoder.close(latents)
        frames = latents[:n] if output_type == "latent" else output.result()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return DiceTalkPipelineOutput(frames=frames, fps=recipe.fps, num_frames=recipe.output_frames(n))

    def _check_call(self, recipe, num_inference_steps, output_type, stream, callback, priors) -> tuple[SamplingRecipe, StreamOptions | None, int]:
        """(the call's recipe, its stream options or None, frames to generate), or an InputError."""
        recipe = (recipe or self.recipe).validated()
        if num_inference_steps is not None:
            recipe = recipe.replace(steps=num_inference_steps)
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        stream = StreamOptions() if stream is True else (stream or None)
        if stream is not None:
            stream = stream.validated()
        if stream is not None and callback is not None:
            raise InputError("callback_on_step_end cannot be used with stream (segments are denoised one after another)")
        n = int(priors.shape[0])
        if n < 1:
            raise InputError("nothing to generate: zero frames")
        return recipe, stream, n

    def _schedule(self, recipe: SamplingRecipe, total: int, window: int):
        """(scheduler with its timesteps set, guided flag per step, window plan per step)."""
        scheduler = scheduler_for(recipe.sampler, self.scheduler)
        scheduler.set_timesteps(recipe.steps, device=self.device)
        levels = getattr(scheduler, "_levels", None) or scheduler.sigmas.tolist()  # host copy: no device sync
        overlap, shift = recipe.window_layout(window)
        plans = [plan_windows(recipe.windows, total, window, overlap, step * shift) for step in range(recipe.steps)]
        return scheduler, recipe.guided_steps(levels), plans

    def _sample(self, cond, recipe, n, total, window, size, generator, report, windows_per_batch, callback, callback_inputs, decoder=None) -> torch.Tensor:
        scheduler, guided_at, plans = self._schedule(recipe, total, window)
        total_windows, done = sum(len(plans[step].index) for step in scheduler.evaluation_steps), [0]
        # Decoding during the last evaluation: it returns its estimate as the final latents (every EDM sampler here).
        last_batches = _final_rows(plans[scheduler.evaluation_steps[-1]], total, windows_per_batch) if decoder is not None and isinstance(scheduler, EDMEulerScheduler) else None

        def on_window() -> None:
            done[0] += 1
            report("denoise", done[0], total_windows)

        def denoise(x: torch.Tensor, sigma: torch.Tensor, step: int) -> torch.Tensor:
            on_batch = None
            if last_batches is not None and done[0] + len(plans[step].index) == total_windows:  # the last evaluation

                def on_batch(windows: int, estimate: torch.Tensor) -> None:
                    decoder.ready(last_batches[windows], estimate)
                    decoder.poll()

            return self.denoise_step(x, sigma, plans[step], cond, recipe, guided_at[step], windows_per_batch, on_window, on_batch)

        with self.progress_bar(total=len(scheduler.timesteps)) as bar:

            def on_step(i, t, x, x0):
                bar.update()
                if callback is not None:
                    names = {"latents": x, "denoised": x0}
                    return (callback(self, i, t, {k: names[k] for k in callback_inputs}) or {}).get("latents")

            x = self.prepare_latents(total, size, cond, scheduler, generator)
            return sample(scheduler, denoise, x, generator, on_step)

    def _sample_stream(self, cond, recipe, n, total, window, size, generator, report, windows_per_batch, stream: StreamOptions, decoder) -> torch.Tensor:
        """Segmented sampling (:mod:`.streaming`): each segment denoised, then decoded, before the next."""
        probe, guided_at, plans = self._schedule(recipe, total, window)
        width = plans[0].index.shape[1]
        segments = plan_segments(n, total, width, recipe.decode_chunk, stream)
        x_init = self.prepare_latents(total, size, cond, probe, generator)
        rng = GeneratorSteps(generator, tuple(x_init.shape))
        steps = probe.evaluation_steps
        seg_plans = [[_segment_plan(plans[step], seg, width, total, x_init.device) for step in range(recipe.steps)] for seg in segments]
        total_windows, done = sum(len(p[step][0].index) for p in seg_plans for step in steps), [0]
        final = torch.empty_like(x_init)

        def on_window() -> None:
            done[0] += 1
            report("denoise", done[0], total_windows)
            if decoder is not None:
                decoder.poll()  # hand over the previous segment's frames as they arrive

        held: tuple[int, int, list[torch.Tensor]] | None = None
        with self.progress_bar(total=len(segments) * len(steps)) as bar:
            for k, seg in enumerate(segments):
                scheduler, _, _ = self._schedule(recipe, total, window)
                nxt = segments[k + 1] if k + 1 < len(segments) else None
                record: list[torch.Tensor] = []
                x = x_init[: seg.hi].clone()
                for e, _t in enumerate(scheduler.timesteps):
                    rng.before(e)
                    x_in, sigma = scheduler.perturb(x, generator)
                    if k == 0:
                        rng.after(e, x.dtype)
                    step = scheduler.step_index
                    plan, covered = seg_plans[k][step]
                    x0 = self.denoise_step(x_in, sigma, plan, cond, recipe, guided_at[step], windows_per_batch, on_window)
                    x = scheduler.step(torch.where(covered, x0, x_in), x_in).prev_sample
                    if held is not None:
                        x[held[0] : held[1]] = held[2][e]
                    if nxt is not None:
                        record.append(x[nxt.lo : nxt.start].clone())
                    bar.update()
                final[seg.start : seg.end] = x[seg.start : seg.end]
                held = (nxt.lo, nxt.start, record) if nxt is not None else None
                if decoder is not None:
                    decoder.ready(seg.end, final)
                    decoder.poll()
        rng.finish()
        return final


class _Output:
    """What the call hands back: frames to the sink as they come, or collected for the result."""

    def __init__(self, pipe, n: int, recipe: SamplingRecipe, output_type: str, frame_sink, report):
        self.output_type, self.frame_sink, self.report = output_type, frame_sink, report
        self.total = recipe.output_frames(n)
        self.delivered = 0
        self.collected: list = []
        self.interpolated: list[torch.Tensor] = []
        self.interpolate = pipe.interpolate_stream(recipe.interpolation, self.interpolated.append)

    def finish(self, pixels: torch.Tensor) -> torch.Tensor:
        """Decoded float pixels in [-1, 1] -> what is handed over (on the pixels' device)."""
        self.interpolate(pixels)
        frames = torch.cat(self.interpolated) if self.interpolated else pixels[:0]
        self.interpolated.clear()
        if self.output_type == "pt" and self.frame_sink is None:
            return ((frames + 1) / 2).clamp(0, 1)
        return to_uint8(frames)

    def deliver(self, frames: torch.Tensor) -> None:
        if not len(frames):
            return
        if self.output_type == "pt" and self.frame_sink is None:
            self.collected.append(frames)
        elif self.frame_sink is not None:
            self.frame_sink(frames.numpy())
        else:
            self.collected.append(frames.numpy())
        self.delivered += len(frames)
        self.report("decode", self.delivered, self.total)

    def result(self):
        if self.frame_sink is not None or not self.collected:
            return None
        if self.output_type == "pt":
            return torch.cat(self.collected)
        frames = np.concatenate(self.collected)
        return [Image.fromarray(f) for f in frames] if self.output_type == "pil" else frames


def _final_rows(plan: WindowPlan, total: int, windows_per_batch: int) -> dict[int, int]:
    """For each count of windows done (by batches), the first latent row not yet final."""
    last = torch.full((total,), -1, dtype=torch.long)
    for j, rows in enumerate(plan.index):
        last[rows] = j
    out = {}
    for done in range(0, len(plan.index) + windows_per_batch, windows_per_batch):
        done = min(done, len(plan.index))
        pending = (last >= done).nonzero()
        out[done] = int(pending[0]) if len(pending) else total
    return out


def _segment_plan(plan: WindowPlan, segment, width: int, total: int, device) -> tuple[WindowPlan, torch.Tensor]:
    """One step's windows for a segment (:func:`~.streaming.segment_windows`) and the (hi, 1, 1, 1)
    mask of the frames they cover, on ``device``."""
    starts = segment_windows(plan.starts, width, segment, total)
    w = min(width, segment.hi - segment.lo)
    index = torch.tensor(starts, dtype=torch.long)[:, None] + torch.arange(w)[None]
    weights = plan.weights if w == len(plan.weights) else torch.ones(w)
    covered = torch.zeros(segment.hi, 1, 1, 1, dtype=torch.bool)
    covered[index.flatten()] = True
    return WindowPlan(starts, index, weights), covered.to(device, non_blocking=True)


def _rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InputError(f"the portrait must be an RGB image (H, W, 3), got shape {image.shape}")
    return image


def _sampler_of(scheduler) -> str:
    return getattr(scheduler, "sampler", "euler")  # diffusers' EulerDiscreteScheduler (older folders) samples as euler


class _vae_dtype:
    """Run the VAE in ``dtype`` for a block (SVD's VAE encodes in float32 even in a half-precision pipeline)."""

    def __init__(self, vae, dtype):
        self.vae, self.dtype, self.original = vae, dtype, vae.dtype

    def __enter__(self):
        if self.dtype != self.original:
            self.vae.to(dtype=self.dtype)

    def __exit__(self, *exc):
        if self.dtype != self.original:
            self.vae.to(dtype=self.original)
