"""EDI's oracles: ``dicetalk render-emotive`` with the world's exact render of each portrait at rest.

The synthetic world can render the person of an emotional portrait at their neutral expression,
which no model can do for a user's photo; these renders bound what any decoupling can give:

* ``latent``: EDI's reference decoupler is replaced by a lookup of that render's latent (same head
  pose), so the reference latent is perfectly decoupled; the refiner and CLIP keep the photo.
* ``portrait``: the portrait itself is replaced by that render (every carrier at rest, same pose).
* ``upright``: as ``portrait``, and the emotion's head posture is taken out of the pose too.

Every other argument is ``render-emotive``'s (with ``--portrait emotional``)::

    python benchmarks/edi_oracles.py render-emotive data/world --out runs/eval/val96_oracle \\
        --request label --portrait emotional --split val --max-frames 50 --per-group 3 --oracle latent
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ORACLES = ("latent", "portrait", "upright")


def _split_of(argv: list[str]) -> str:
    return argv[argv.index("--split") + 1] if "--split" in argv else "test"


def rest_render(record, world, rest_posture: bool) -> np.ndarray:
    """The first frame of ``record``'s clip with its person at rest (uint8 (H, W, 3))."""
    from dicetalk.synthetic.expressions import emotion_expression
    from dicetalk.synthetic.face import FaceRenderer
    from dicetalk.synthetic.identity import sample_identity
    from dicetalk.training.decoupler import target_pose

    seed, people, size = world
    person = sample_identity(seed, people[record.identity], record.identity)
    pose = target_pose(record, rest_posture)[0]
    return FaceRenderer(person.appearance, size).render(emotion_expression("neutral", 1, person.habits), pose.astype(np.float32))[0]


def install_latent_oracle(dataset: str, split: str) -> None:
    """EDI's decoupler returns the world's rest render of the portrait (nearest portrait latent)."""
    from dicetalk.models.reference_decoupler import ReferenceDecoupler
    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.training.decoupler import neutral_pairs

    pipe = load_pipeline(None, dtype=torch.float32)
    x, y = neutral_pairs(dataset, split, pipe.vae.eval(), pipe.native_size, 1)  # each clip's first frame

    def oracle(self, latents: torch.Tensor) -> torch.Tensor:
        d = ((latents.float().cpu().flatten(1)[:, None] - x.flatten(1)[None]) ** 2).mean(-1)
        if float(d.min(1).values.max()) > 1e-3:
            raise RuntimeError("a portrait latent is not the first frame of a clip of the split")
        return y[d.argmin(1)].to(latents.device, latents.dtype)

    ReferenceDecoupler.forward = oracle


def install_portrait_oracle(dataset: str, split: str, rest_posture: bool) -> None:
    """Every one-frame read of a clip of the split (the portrait) returns its rest render."""
    import dicetalk.utils.media as media
    from dicetalk.data.index import scan
    from dicetalk.training.decoupler import _world_people

    world = _world_people(Path(dataset))
    by_video = {str(r.video): r for r in scan(dataset, splits=(split,), datasets=("mead",))}
    read_video = media.read_video

    def patched(path, *args, **kwargs):
        clip = read_video(path, *args, **kwargs)
        record = by_video.get(str(path))
        if kwargs.get("max_frames") == 1 and record is not None:
            clip.frames[0] = rest_render(record, world, rest_posture)
        return clip

    media.read_video = patched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", choices=ORACLES, required=True)
    args, rest = parser.parse_known_args()
    if not rest or rest[0] != "render-emotive" or len(rest) < 2:
        parser.error("give render-emotive and its arguments")
    dataset, split = rest[1], _split_of(rest)
    from dicetalk.errors import InputError
    from dicetalk.training.decoupler import _world_people

    try:
        _world_people(Path(dataset))  # a synthetic world: the oracles render from it
    except InputError as exc:
        parser.error(str(exc))
    if args.oracle == "latent":
        install_latent_oracle(dataset, split)
    else:
        install_portrait_oracle(dataset, split, rest_posture=args.oracle == "upright")
    from dicetalk.cli.main import main as dicetalk_main

    return dicetalk_main(rest)


if __name__ == "__main__":
    sys.exit(main())
