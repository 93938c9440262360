"""Judges and metrics: Emo-Score, F-SIM, Sync-C / Sync-D, mouth error, FID / FVD analogues, clustering strength.

Real MEAD/HDTF and their pretrained scorers (an emotion classifier, ArcFace, SyncNet, I3D) are
out of reach here, so the project trains its own small judges on ground-truth frames of the
synthetic world's training identities and ships them (a few MB) in ``dicetalk/assets/judges``.
Modules, one per concern:

- ``features``: what the judges see (64 px whole frames, lower-face crops, log-mel audio);
- ``judges``: the emotion, identity, lip-sync and mouth-shape networks, saving and loading;
- ``sync``: Sync-C / Sync-D / offset of one clip (SyncNet's LSE-C / LSE-D);
- ``mouth``: the world's true mouth shape and lip sync measured against it (LMD-style error,
  correlation of the opening over time);
- ``stats``: bootstrap intervals over clips, paired comparison of two reports;
- ``metrics``: Fréchet distance, clip-level segment features, clustering strength, pair separation;
- ``data``: clips of a dataset folder and their decoded judge inputs;
- ``scoring``: judge outputs per video and the judges' own checks on ground truth;
- ``training``: ``dicetalk train-judges``;
- ``evaluate``: ``dicetalk evaluate`` (generated videos, ground truth, embeddings);
- ``render``: ``dicetalk render-eval`` / ``embed``, the inputs ``evaluate`` scores.
"""

from .judges import EmotionJudge, IdentityJudge, Judges, MouthJudge, SyncJudge, default_judges_dir, load_judge, load_judges
from .metrics import clustering_strength, frechet_distance, frechet_from_stats, same_vs_different, segment_features
from .sync import SyncResult, sync_scores

__all__ = [
    "EmotionJudge",
    "IdentityJudge",
    "Judges",
    "MouthJudge",
    "SyncJudge",
    "SyncResult",
    "clustering_strength",
    "default_judges_dir",
    "frechet_distance",
    "frechet_from_stats",
    "load_judge",
    "load_judges",
    "same_vs_different",
    "segment_features",
    "sync_scores",
]
