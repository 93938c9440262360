"""Training of DICE-Talk's learnable parts.

``losses.info_nce`` is the emotion embedder's contrastive objective (paper Sec. 3.1). The VQ term of
the total loss ``L = L_denoise + lambda L_cls + L_vq`` comes from
:class:`~dicetalk.models.emotion_bank.EmotionBank` and the emotion-discrimination term from
:meth:`~dicetalk.models.discriminator.EmotionDiscriminator.loss`.
"""
