"""Neural components of DICE-Talk, each a diffusers ``ModelMixin`` + ``ConfigMixin`` (or a transformers model).

| module | component | paper |
| --- | --- | --- |
| ``emotion_embedder`` | :class:`DisentangledEmotionEmbedder` | Sec. 3.1, Eq. 2-6 |
| ``emotion_bank`` | :class:`EmotionBank` | Sec. 3.2, Eq. 9-13, 17 |
| ``discriminator`` | :class:`EmotionDiscriminator` | Sec. 3.3, Eq. 16 |
| ``token_projection`` | :class:`TokenProjection` (audio projection) | backbone |
| ``mask_encoder`` | :class:`FaceMaskEncoder` | backbone |
| ``unet`` + ``attention_processors`` | :class:`DiceTalkUNet` | Eq. 14 |
| ``audio_encoder`` | Whisper encoder + per-frame windows | backbone |
| ``reference_refiner`` | :class:`ReferenceRefiner` (decoded frame + portrait -> frame) | added: a small VAE's lost detail |
| ``frame_interpolator`` | :class:`FrameInterpolator` (RIFE HDv3: 12.5 -> 25 fps) | the release's post-processing |
| ``registry`` | :func:`build_components` for a named configuration | |
"""
