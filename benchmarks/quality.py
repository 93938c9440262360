"""Quality against UNet evaluations per frame, for sampler recipes, scored by the judges.

Renders the same held-out clips (first frame + speech + emotion label of the synthetic world's
test identities) with each recipe, scores them with ``dicetalk evaluate``'s judges and prints::

    | recipe | UNet evals / frame | s / video s | Emo-Score | Emo-Score (8) | F-SIM | Sync-C | Sync-D | FVD |

Evaluations per frame are counted with a hook on the UNet (frames in every forward, over the
frames of video), so window overlap and guidance branches are included as they really run.
A recipe is ``STEPS:SAMPLER:GUIDANCE_FRACTION``; the release's is ``25:euler:1``::

    python benchmarks/quality.py DATASET --out runs/quality [--weights DIR] \
        [--recipes 25:euler:1 10:dpmpp-2m:1 10:dpmpp-2m:0.5] [--emotions neutral,happy,surprised,angry] \
        [--reference-frame clip|neutral] [--mode label|other-identity] [--identity-scale S] [--emotion-scale S] [--audio-scale S] [--guidance-interval LO HI] [--overlap N]

``--reference-frame neutral`` animates each person's neutral frame instead of the clip's own first
frame, so the Emo-Score counts only what the emotion condition draws. ``--mode other-identity``
takes the emotion prior from a clip of another person (the identity-leakage test: F-SIM should
stay where the label prior puts it).

Two rows close the table: the same clips encoded and decoded by the model's autoencoder alone
(and its reference refiner, if it has one: the ceiling of a latent model with this autoencoder)
and ground truth.

Rendered videos are kept under ``OUT/<recipe>/`` (re-running resumes) with ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def parse_recipe(text: str) -> tuple[int, str, float]:
    steps, sampler, fraction = text.split(":")
    return int(steps), sampler, float(fraction)


def video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


class EvalCounter:
    """Counts frames through the UNet (a forward hook), to report evaluations per output frame."""

    def __init__(self, unet: torch.nn.Module):
        self.frames = 0
        unet.register_forward_hook(self._hook)

    def _hook(self, _module, args, _output):
        sample = args[0]  # (batch, frames, channels, h, w)
        self.frames += sample.shape[0] * sample.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--out", required=True)
    parser.add_argument("--weights", default=None, help="weights folder (default: the embedded model)")
    parser.add_argument("--recipes", nargs="+", default=["25:euler:1", "10:dpmpp-2m:1", "10:dpmpp-2m:0.5", "6:dpmpp-2m:0.5"])
    parser.add_argument("--emotions", default="neutral,happy,surprised,angry")
    parser.add_argument("--mode", default="label", choices=("label", "reference", "other-identity"),
                        help="emotion condition: the label's prompt prior, another clip of the person, or a clip of another person")
    parser.add_argument("--reference-frame", default="clip", choices=("clip", "neutral"), help="the clip's first frame or the person's neutral frame")
    parser.add_argument("--identity-scale", type=float, default=None, help="guidance scale of the reference image (default: the model's)")
    parser.add_argument("--emotion-scale", type=float, default=None, help="guidance scale of audio + emotion (default: the model's)")
    parser.add_argument("--audio-scale", type=float, default=None, help="guidance scale of the speech alone, an extra branch (default: the model's)")
    parser.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="guidance only on steps whose noise level lies in [LO, HI] (default: the model's recipe)")
    parser.add_argument("--overlap", type=int, default=None, help="frames shared by neighbouring sampling windows (default: the model's recipe, else a quarter window)")
    parser.add_argument("--max-frames", type=int, default=50, help="frames per clip (from its start)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from dicetalk.evaluation.evaluate import collect_generated, collect_ground_truth, evaluate_items
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.render import RenderOptions, render_autoencoder_set, render_evaluation_set
    from dicetalk.pipeline.loading import load_pipeline

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    counter = EvalCounter(pipe.unet)
    judges = load_judges().eval()
    rows = []
    for text in args.recipes:
        steps, sampler, fraction = parse_recipe(text)
        folder = Path(args.out) / text.replace(":", "_")
        opts = RenderOptions(
            dataset=args.dataset, out=str(folder), weights=args.weights, emotions=tuple(args.emotions.split(",")), reference_frame=args.reference_frame, mode=args.mode,
            identity_scale=args.identity_scale, emotion_scale=args.emotion_scale, audio_scale=args.audio_scale, overlap=args.overlap,
            guidance_interval=None if args.guidance_interval is None else tuple(args.guidance_interval),
            steps=steps, sampler=sampler, guidance_fraction=fraction, max_frames=args.max_frames,
        )  # fmt: skip
        counter.frames = 0
        before = {p for p in folder.glob("*.mp4")} if folder.is_dir() else set()
        start = time.perf_counter()
        videos = render_evaluation_set(opts, pipe=pipe, progress=True)
        wall = time.perf_counter() - start
        torch.set_num_threads(args.threads)  # evaluate_items drops to one thread
        items, warnings = collect_generated(folder, args.dataset)
        report = evaluate_items(items, judges=judges, progress=False, warnings=warnings)
        (folder / "report.json").write_text(json.dumps(report, indent=1))
        frames = sum(video_frames(v) for v in videos if v not in before)  # rendered by this run
        timing = folder / "timing.json"  # kept from the run that rendered the videos
        if frames:
            timing.write_text(json.dumps({"unet_evals_per_frame": counter.frames / frames, "seconds_per_video_second": wall / (frames / 25.0)}))
        measured = json.loads(timing.read_text()) if timing.is_file() else {}
        rows.append((text, measured.get("unet_evals_per_frame"), measured.get("seconds_per_video_second"), report))

    # The same source clips through the autoencoder alone, and ground truth scored as if generated.
    folder = Path(args.out) / "autoencoder"
    torch.set_num_threads(args.threads)  # evaluate_items dropped to one thread
    ae_opts = RenderOptions(
        dataset=args.dataset, out=str(folder), emotions=tuple(args.emotions.split(",")), max_frames=args.max_frames, reference_frame=args.reference_frame
    )  # the reference frame feeds the model's refiner, if it has one
    render_autoencoder_set(ae_opts, pipe=pipe, progress=False)
    items_ae, warnings = collect_generated(folder, args.dataset)
    rows.append(("autoencoder round trip (no diffusion)", None, None, evaluate_items(items_ae, judges=judges, progress=False, warnings=warnings)))
    sources = {it.source.relative for it in items}
    truth = [it for it in collect_ground_truth(args.dataset) if it.source.relative in sources]
    rows.append(("ground truth (whole clips)", None, None, evaluate_items(truth, judges=judges, progress=False)))

    def fmt(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    print("| recipe (steps:sampler:guided share) | UNet evals / frame | s / video s | Emo-Score | Emo-Score (8) | F-SIM | Sync-C | Sync-D | FVD |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for text, evals, speed, r in rows:
        print(
            f"| {text} | {fmt(evals, 1)} | {fmt(speed, 2)} | {fmt(r.get('emo_score'))} | {fmt(r.get('emo_score_all8'))} | "
            f"{fmt(r.get('fsim'))} | {fmt(r.get('sync_c'))} | {fmt(r.get('sync_d'))} | {fmt(r.get('fvd'), 1)} |"
        )  # fmt: skip


if __name__ == "__main__":
    main()
