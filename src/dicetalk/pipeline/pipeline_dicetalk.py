"""DiceTalkPipeline: portrait + speech + emotion -> talking-head frames.

The release's recipe, on diffusers' building blocks:

1. the reference portrait gives VAE latents (concatenated to every noisy frame on channels) and
   a CLIP image embedding (the image cross-attention token);
2. speech goes through the Whisper encoder; each frame takes a window of 10 feature frames x all
   hidden states, projected to audio tokens;
3. the emotion prior of each frame goes through the emotion bank (attention over every code) to
   emotion tokens;
4. the face-region mask goes through the mask encoder, added after the UNet's input convolution;
5. EDM sampling (Euler on Karras noise levels, v-prediction) over overlapping windows of frames
   shifted at every step, averaged in latent space; on a guided step (the recipe may guide only
   part of the steps or of the noise levels) each window runs the three guidance branches
   (nothing / image / image + audio + emotion) in one batched UNet call:
   ``x0 = x0_none + s_id (x0_image - x0_none) + s_ae (x0_full - x0_image)``; at ``s_id = 1`` the
   unconditional branch cancels out and is not run (two branches, a third less work);
6. chunked VAE decoding, streamed to the caller so memory stays bounded by the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

from .. import edm
from ..errors import InputError
from ..models.audio_encoder import encode_audio, frame_features, frame_windows
from .sampling import sample
from .windows import window_starts, window_weights

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class DiceTalkPipelineOutput(BaseOutput):
    frames: np.ndarray | None  # (F, H, W, 3) uint8, or None when frames were streamed to a sink
    fps: float
    num_frames: int


@dataclass
class _Conditions:
    """Everything about one video that does not change across denoising steps."""

    image_latents: torch.Tensor  # (1, C, h, w)
    image_embeds: torch.Tensor  # (1, 1, D)
    mask_features: torch.Tensor  # (1, C0, h, w)
    audio_hidden: torch.Tensor  # (2F, L+1, C) Whisper hidden states at 50 Hz
    priors: torch.Tensor  # (F, prior_dim)
    null_audio_tokens: torch.Tensor  # (T, D) tokens of silence-free zero features
    null_emotion_tokens: torch.Tensor  # (T, D) tokens of a dropped emotion
    added_time_ids: torch.Tensor  # (1, 3)
    bank: tuple[torch.Tensor, torch.Tensor] | None = None  # the emotion bank's keys/values, computed once


class DiceTalkPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->audio_encoder->audio_projection->emotion_bank->mask_encoder->unet->vae->refiner"
    _optional_components = ["emotion_embedder", "expression_encoder", "discriminator", "refiner"]

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
        default_steps: int = 25,
        default_sampler: str = "euler",
        default_guidance_fraction: float = 1.0,
        default_identity_scale: float = 3.0,
        default_emotion_scale: float = 6.0,
        default_audio_scale: float | None = None,
        default_guidance_interval: tuple[float, float] | None = None,
        default_overlap: int | None = None,
    ):
        super().__init__()
        # The sampling recipe this model was tuned for (saved in model_index.json).
        self.register_to_config(
            default_steps=default_steps,
            default_sampler=default_sampler,
            default_guidance_fraction=default_guidance_fraction,
            default_identity_scale=default_identity_scale,
            default_emotion_scale=default_emotion_scale,
            default_audio_scale=default_audio_scale,
            default_guidance_interval=None if default_guidance_interval is None else [float(v) for v in default_guidance_interval],
            default_overlap=default_overlap,
        )
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
        )

    # ------------------------------------------------------------------ geometry
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def window(self) -> int:
        return int(self.unet.config.num_frames)

    # ------------------------------------------------------------------ conditions
    def _pixels(self, image: np.ndarray | Image.Image, size: int) -> torch.Tensor:
        """RGB image -> (1, 3, size, size) in [-1, 1] on the pipeline device."""
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        return x.to(self.device)

    def encode_image(self, pixels: torch.Tensor, noise_aug_strength: float, generator: torch.Generator | None):
        """VAE latents of the (noise-augmented) reference and its CLIP image embedding."""
        noise = torch.randn(pixels.shape, generator=generator, dtype=torch.float32).to(pixels.device)
        noisy = (pixels + noise_aug_strength * noise).to(self.vae.dtype)
        latents = self.vae.encode(noisy).latent_dist.mode()  # unscaled, as SVD conditions on them
        clip_size = self.image_encoder.config.image_size
        x = F.interpolate((pixels + 1) / 2, size=(clip_size, clip_size), mode="bicubic", align_corners=False).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        embeds = self.image_encoder((x - mean) / std).image_embeds[:, None]
        return latents.to(self.unet.dtype), embeds.to(self.unet.dtype)

    def face_mask_features(self, mask: np.ndarray | None, size: int) -> torch.Tensor:
        """Mask-encoder features of the face region (H, W) in {0, 1}; None: the central 3/4."""
        if mask is None:
            mask = np.zeros((size, size), np.float32)
            m = size // 8
            mask[m : size - m, m : size - m] = 1.0
        m = torch.as_tensor(np.asarray(mask, np.float32))[None, None]
        m = F.interpolate(m, size=(size, size), mode="nearest").expand(1, 3, size, size)
        return self.mask_encoder(m.to(self.device, self.mask_encoder.dtype)).to(self.unet.dtype)

    def audio_tokens(self, hidden: torch.Tensor, frames: slice, total: int, fps: float) -> torch.Tensor:
        windows = frame_windows(hidden, total, fps=fps, frames=frames)
        return self.audio_projection(windows.to(hidden.device, self.audio_projection.dtype)).to(self.unet.dtype)

    def emotion_tokens(self, priors: torch.Tensor, bank=None) -> torch.Tensor:
        out = self.emotion_bank(priors[None].to(self.emotion_bank.device, self.emotion_bank.dtype), use_bank=True, bank=bank)
        return out.tokens[0].to(self.unet.dtype)

    def prepare_conditions(
        self,
        image,
        audio: np.ndarray,
        priors: torch.Tensor,
        fps: float,
        face_mask: np.ndarray | None,
        noise_aug_strength: float,
        motion_bucket_id: int,
        generator: torch.Generator | None,
    ) -> _Conditions:
        size = self.image_size
        num_frames = priors.shape[0]
        latents, embeds = self.encode_image(self._pixels(image, size), noise_aug_strength, generator)
        # A few seconds of chunks per encoder call: memory independent of the audio's length.
        chunk_seconds = self.audio_feature_extractor.n_samples / self.audio_feature_extractor.sampling_rate
        hidden = encode_audio(
            self.audio_encoder, self.audio_feature_extractor, audio, num_frames, fps, chunk_batch_size=max(1, int(4 // chunk_seconds))
        )
        blocks = self.audio_projection.config
        zero_window = torch.zeros(1, blocks.seq_len, blocks.blocks, blocks.channels, device=self.device, dtype=self.audio_projection.dtype)
        null_audio = self.audio_projection(zero_window)[0].to(self.unet.dtype)
        dropped = self.emotion_bank(
            torch.zeros(1, 1, self.emotion_bank.config.prior_dim, device=self.device, dtype=self.emotion_bank.dtype),
            use_bank=True,
            drop=torch.ones(1, dtype=torch.bool, device=self.device),
        )
        time_ids = torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]], device=self.device, dtype=self.unet.dtype)
        bank = self.emotion_bank.bank_keys_values() if self.emotion_bank.config.use_bank else None
        return _Conditions(
            image_latents=latents,
            image_embeds=embeds,
            mask_features=self.face_mask_features(face_mask, size),
            audio_hidden=hidden,
            priors=priors.to(self.device),
            null_audio_tokens=null_audio,
            null_emotion_tokens=dropped.tokens[0, 0].to(self.unet.dtype),
            added_time_ids=time_ids,
            bank=bank,
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
        frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        enc = self.expression_encoder
        expression = enc(frames.to(self.device, enc.dtype))[None]
        audio = None
        if clip.audio is not None and np.abs(clip.audio).max() > 0:
            hidden = encode_audio(self.audio_encoder, self.audio_feature_extractor, clip.audio, n, clip.fps)
            audio = frame_features(hidden, n, clip.fps)[None].to(self.emotion_embedder.dtype)
        out = self.emotion_embedder.eval()(expression=expression.to(self.emotion_embedder.dtype), audio=audio, sample=False)
        return out.mu[0]

    # ------------------------------------------------------------------ denoising
    def _guided_x0(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        starts: list[int],
        cond: _Conditions,
        fps: float,
        identity_scale: float,
        audio_emotion_scale: float,
        guided: bool = True,
        audio_scale: float | None = None,
    ) -> torch.Tensor:
        """Guided denoised estimate of every window, (len(starts), W, C, h, w).

        ``guided=False`` runs only the fully conditioned branch (no guidance), one pass instead of three;
        an ``audio_scale`` other than ``audio_emotion_scale`` adds the image + audio branch.
        """
        w = min(self.window, x.shape[0])
        total = x.shape[0]
        nw = len(starts)
        xs = torch.stack([x[s : s + w] for s in starts])  # (nw, W, C, h, w)
        audio = torch.stack([self.audio_tokens(cond.audio_hidden, slice(s, s + w), total, fps) for s in starts])
        emotion = torch.stack([self.emotion_tokens(cond.priors[s : s + w], cond.bank) for s in starts])
        null_audio = cond.null_audio_tokens.expand_as(audio[:1]).expand_as(audio)
        null_emotion = cond.null_emotion_tokens.expand_as(emotion[:1]).expand_as(emotion)
        image = cond.image_latents[:, None].expand(nw, w, -1, -1, -1)
        scaled = (xs * edm.c_in(sigma)).to(self.unet.dtype)
        embeds = cond.image_embeds.expand(nw, -1, -1)
        mask = cond.mask_features[:, None].expand(nw, w, -1, -1, -1)
        full_input = torch.cat([scaled, image], 2)
        if not guided:
            out = self.unet(
                full_input, edm.c_noise(sigma).to(self.unet.dtype), embeds, cond.added_time_ids.expand(nw, -1),
                audio_tokens=audio, emotion_tokens=emotion, mask_features=mask,
            ).sample.float()  # fmt: skip
            return edm.c_skip(sigma) * xs + edm.c_out(sigma) * out
        # Branches stacked on the batch: [nothing,] image, [image + audio,] image + audio + emotion.
        # At s_id = 1 the unconditional estimate cancels (none + 1 * (image - none)), so it is not
        # computed; the image + audio one only serves an audio scale of its own.
        with_none = identity_scale != 1.0
        with_audio = audio_scale is not None and audio_scale != audio_emotion_scale
        null_input = [torch.cat([scaled, torch.zeros_like(image)], 2)] if with_none else []
        null_embeds = [torch.zeros_like(embeds)] if with_none else []
        conditioned = 3 if with_audio else 2  # branches that see the image
        n = conditioned + with_none
        audios = [null_audio] * (1 + with_none) + [audio] * (conditioned - 1)
        emotions = [null_emotion] * (n - 1) + [emotion]
        out = self.unet(
            torch.cat([*null_input] + [full_input] * conditioned),
            edm.c_noise(sigma).to(self.unet.dtype),
            torch.cat([*null_embeds] + [embeds] * conditioned),
            cond.added_time_ids.expand(n * nw, -1),
            audio_tokens=torch.cat(audios),
            emotion_tokens=torch.cat(emotions),
            mask_features=cond.mask_features[:, None].expand(n * nw, w, -1, -1, -1),
        ).sample.float()
        x0 = edm.c_skip(sigma) * xs + edm.c_out(sigma) * out.view(n, nw, *out.shape[1:])
        image_x0 = x0[int(with_none)]
        return edm.guided(
            image_x0, x0[-1], audio_emotion_scale, identity_scale, x0[0] if with_none else None,
            audio=x0[-2] if with_audio else None, audio_scale=audio_scale,
        )  # fmt: skip

    def denoise_all(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        step: int,
        cond: _Conditions,
        fps: float,
        identity_scale: float,
        audio_emotion_scale: float,
        overlap: int,
        shift: int,
        windows_per_batch: int,
        guided: bool = True,
        audio_scale: float | None = None,
        on_window: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Denoised estimate of the whole video: window estimates averaged in latent space."""
        total = x.shape[0]
        w = min(self.window, total)
        starts = window_starts(total, w, overlap, offset=step * shift)
        weights = window_weights(w, overlap if total > w else 0).to(x.device).view(w, 1, 1, 1)
        acc = torch.zeros_like(x)
        norm = torch.zeros(total, 1, 1, 1, device=x.device)
        for i in range(0, len(starts), windows_per_batch):
            batch = starts[i : i + windows_per_batch]
            x0 = self._guided_x0(x, sigma, batch, cond, fps, identity_scale, audio_emotion_scale, guided, audio_scale)
            for s, est in zip(batch, x0):
                acc[s : s + w] += est * weights
                norm[s : s + w] += weights
                if on_window is not None:
                    on_window()
        return acc / norm

    # ------------------------------------------------------------------ decoding
    def decode(self, latents: torch.Tensor, chunk: int, sink: Callable[[np.ndarray], None], reference: torch.Tensor | None = None) -> None:
        """Decode (F, C, h, w) latents ``chunk`` frames at a time, handing uint8 frames to ``sink``.

        ``reference``: the portrait's (1, 3, H, W) pixels, for the reference refiner (if the model has one;
        None: the decoded frames are final).
        """
        scale = self.vae.config.scaling_factor
        for s in range(0, latents.shape[0], chunk):
            z = (latents[s : s + chunk] / scale).to(self.vae.dtype)
            pixels = self.vae.decode(z, num_frames=z.shape[0]).sample
            if self.refiner is not None and reference is not None:
                pixels = self.refiner(pixels.to(self.refiner.dtype).clamp(-1, 1), reference)
            pixels = pixels.float()
            frames = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
            sink(frames.cpu().numpy())

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray | Image.Image,
        audio: np.ndarray,
        priors: torch.Tensor,
        fps: float = 25.0,
        num_inference_steps: int | None = None,
        identity_scale: float | None = None,
        audio_emotion_scale: float | None = None,
        face_mask: np.ndarray | None = None,
        overlap: int | None = None,
        shift: int | None = None,
        windows_per_batch: int = 1,
        noise_aug_strength: float = 0.02,
        motion_bucket_id: int = 127,
        decode_chunk_size: int = 8,
        generator: torch.Generator | None = None,
        frame_sink: Callable[[np.ndarray], None] | None = None,
        sampler: str | None = None,
        guidance_fraction: float | None = None,
        audio_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> DiceTalkPipelineOutput:
        """Generate ``priors.shape[0]`` frames at ``fps``.

        ``image``: the (cropped) portrait; ``audio``: mono float32 speech at 16 kHz covering the
        video; ``priors``: one emotion prior per frame (see :mod:`.emotion_condition`);
        ``face_mask``: where the face may move (None: the central region); ``frame_sink``:
        receives decoded uint8 frames chunk by chunk instead of returning them; ``sampler``:
        ``euler``, ``euler-churn``, ``heun`` or ``dpmpp-2m`` (see :mod:`.sampling`); ``guidance_fraction``: the share
        of the steps (the first, noisiest ones) that run all three guidance branches — the others
        run the fully conditioned branch alone, a third of the work; ``guidance_interval``
        ``(lo, hi)``: of those steps, only the ones whose noise level lies in ``[lo, hi]`` run the
        guidance (None: the model's recipe, whose None means every level); ``overlap``: frames
        shared by neighbouring sampling windows (None: the model's recipe, whose None means a
        quarter window); ``identity_scale`` (``s_id``) and
        ``audio_emotion_scale`` (``s_ae``): the guidance scales (None: the model's recipe);
        ``audio_scale`` (``s_a``): the speech's own scale, one more branch when it differs from
        ``s_ae`` (None: the model's recipe, whose None means ``s_ae``); ``progress(stage, done, total)``:
        called as work advances, with ``stage`` ``"encode"`` (the portrait and speech), ``"denoise"``
        (windows, over all steps) and ``"decode"`` (frames); an exception it raises stops the call.
        """
        num_inference_steps = num_inference_steps or self.config.default_steps
        sampler = sampler or self.config.default_sampler
        guidance_fraction = self.config.default_guidance_fraction if guidance_fraction is None else guidance_fraction
        identity_scale = self.config.default_identity_scale if identity_scale is None else float(identity_scale)
        audio_emotion_scale = self.config.default_emotion_scale if audio_emotion_scale is None else float(audio_emotion_scale)
        audio_scale = self.config.default_audio_scale if audio_scale is None else float(audio_scale)
        interval = self.config.default_guidance_interval if guidance_interval is None else guidance_interval
        lo, hi = (0.0, float("inf")) if interval is None else (float(interval[0]), float(interval[1]))
        num_frames = int(priors.shape[0])
        if num_frames < 1:
            raise ValueError("nothing to generate: zero frames")
        w = min(self.window, num_frames)
        overlap = self.config.default_overlap if overlap is None else overlap  # None: a quarter window
        overlap = max(0, min(w - 1, w // 4 if overlap is None else overlap))
        shift = max(1, (w - overlap) // 3) if shift is None else shift
        report = progress or (lambda stage, done, total: None)
        report("encode", 0, 1)
        cond = self.prepare_conditions(image, audio, priors, fps, face_mask, noise_aug_strength, motion_bucket_id, generator)
        report("encode", 1, 1)

        self.scheduler.set_timesteps(num_inference_steps, device="cpu")
        sigmas = self.scheduler.sigmas.to(torch.float32)
        c, h = self.unet.config.out_channels, int(self.unet.config.sample_size)
        noise = torch.randn((num_frames, c, h, h), generator=generator, dtype=torch.float32)
        x = (noise * sigmas[0]).to(self.device)
        guided_steps = int(round(guidance_fraction * num_inference_steps))
        # Decided on the host from the schedule, before sampling: no device sync per step.
        levels = sigmas.tolist()
        guided_at = [step < guided_steps and lo <= levels[step] <= hi for step in range(num_inference_steps)]

        windows = [len(window_starts(num_frames, w, overlap, offset=step * shift)) for step in range(num_inference_steps)]
        total_windows = sum(windows) + (sum(windows[:-1]) if sampler == "heun" else 0)
        done = [0]

        def on_window() -> None:
            done[0] += 1
            report("denoise", done[0], total_windows)

        def denoise(x: torch.Tensor, sigma: torch.Tensor, step: int) -> torch.Tensor:
            guided = guided_at[step]
            return self.denoise_all(
                x, sigma.to(x.device), step, cond, fps, identity_scale, audio_emotion_scale, overlap, shift, windows_per_batch, guided, audio_scale,
                on_window,
            )  # fmt: skip

        with self.progress_bar(total=num_inference_steps) as bar:
            x = sample(denoise, x, sigmas.to(self.device), sampler, on_step=bar.update, generator=generator)

        collected: list[np.ndarray] = []
        reference = self._pixels(image, self.image_size) if self.refiner is not None else None
        sink = frame_sink or collected.append
        decoded = [0]

        def counted_sink(frames: np.ndarray) -> None:
            sink(frames)
            decoded[0] += len(frames)
            report("decode", decoded[0], num_frames)

        self.decode(x, decode_chunk_size, counted_sink, reference)
        frames = np.concatenate(collected) if collected else None
        self.maybe_free_model_hooks()
        return DiceTalkPipelineOutput(frames=frames, fps=fps, num_frames=num_frames)
