"""What an emotional portrait's expression leaves in the reference latent after EDI's decoupler.

For the first frame of every val person's level-3 clip of each emotion (neutral: level 1): encode it,
decouple it (the embedded model's decoupler, and ``--decoupler`` if given), decode, and read the
expression encoder's 12 coefficients; subtract the reading of the same person and pose rendered at
rest and passed through the same autoencoder. Prints the mean difference per emotion and its summed
absolute value (``unchanged``: no decoupling)::

    python benchmarks/decoupler_residue.py data/world --decoupler runs/decoupler_fresh/decoupler
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--decoupler", default=None, help="another trained decoupler (train-decoupler's OUT/decoupler) to compare")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from dicetalk.data.index import scan
    from dicetalk.models.reference_decoupler import ReferenceDecoupler
    from dicetalk.pipeline.emotivetalk import load_emotivetalk_pipeline
    from dicetalk.synthetic.expressions import EXPRESSION_NAMES, emotion_expression
    from dicetalk.synthetic.face import FaceRenderer
    from dicetalk.synthetic.identity import sample_identity
    from dicetalk.training.decoupler import _world_people, encode_frames, target_pose
    from dicetalk.utils.media import read_video
    from dicetalk.utils.pixels import to_uint8

    pipe = load_emotivetalk_pipeline(None, dtype=torch.float32)
    decouplers = {"shipped": pipe.decoupler.float()}
    if args.decoupler:
        decouplers["given"] = ReferenceDecoupler.from_pretrained(args.decoupler).float().eval()
    seed, people, world_size = _world_people(args.dataset)
    size = pipe.native_size
    first = {}
    for r in scan(args.dataset, splits=(args.split,), datasets=("mead",)):
        if r.level == 3 or r.emotion == "neutral":
            first.setdefault((r.identity, r.emotion), r)

    def encode(image):
        return encode_frames(pipe.vae, size, [image])

    def read(latent):
        return pipe.read_expression(to_uint8(pipe.vae.decode(latent, num_frames=1).sample).cpu().numpy())[0].numpy()

    rows: dict[str, list[dict]] = {}
    with torch.no_grad():
        for (identity, emotion), record in sorted(first.items()):
            person = sample_identity(seed, people[identity], identity)
            frame = read_video(record.video, max_frames=1, with_audio=False).frames[0]
            rest = FaceRenderer(person.appearance, world_size).render(emotion_expression("neutral", 1, person.habits), target_pose(record, rest_posture=False)[0])[0]
            x, at_rest = encode(frame), read(encode(rest))
            row = {"unchanged": read(x) - at_rest}
            row.update({name: read(dec(x)) - at_rest for name, dec in decouplers.items()})
            rows.setdefault(emotion, []).append(row)
    print(f"{'emotion':9} {'portrait':9} " + " ".join(f"{n[:6]:>6}" for n in EXPRESSION_NAMES) + "  |sum|")
    for emotion, found in rows.items():
        for name in found[0]:
            mean = np.mean([r[name] for r in found], 0)
            print(f"{emotion:9} {name:9} " + " ".join(f"{v:6.2f}" for v in mean) + f"  {np.abs(mean).sum():.2f}")


if __name__ == "__main__":
    main()
