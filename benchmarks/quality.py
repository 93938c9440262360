"""Quality against UNet evaluations per frame, for sampling recipes, scored by the judges.

Renders the same held-out clips (a reference frame + the clip's speech + its emotion label, from the
identities of one split) with each recipe, scores them with ``dicetalk evaluate``'s judges and prints::

    | recipe | UNet evals / frame | s / video s | Emo-Score | Emo-Score (8) | F-SIM | Sync-C | Sync-D | FVD |

Evaluations per frame are counted with a hook on the UNet (frames in every forward, over the
frames of video), so window layout and guidance branches are included as they really run.
A recipe is a spec as ``dicetalk generate --recipe`` takes it, on the model's own recipe::

    python benchmarks/quality.py DATASET --out runs/quality --split val [--weights DIR] \
        [--recipes model release "model,noise_aug=0.02"] [--emotions neutral,happy,surprised,angry | all] \
        [--levels 3] [--reference-frame clip|neutral] [--mode label|other-identity] [--max-frames 50]

Choose recipes on ``--split val``; score the chosen one once on ``--split test``.
``--reference-frame neutral`` animates each person's neutral frame instead of the clip's own first
frame, so the Emo-Score counts only what the emotion condition draws. ``--mode other-identity``
takes the emotion prior from a clip of another person (the identity-leakage test).

Two rows close the table: the same clips encoded and decoded by the model's autoencoder alone
(and its reference refiner, if it has one: the ceiling of a latent model with this autoencoder)
and ground truth.

Rendered videos are kept under ``OUT/<split>/<recipe>/`` (re-running resumes) with ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from dicetalk import EMOTIONS


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


def folder_name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_") or "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", default="val", choices=("val", "test"), help="identities to render (choose on val, report on test)")
    parser.add_argument("--weights", default=None, help="weights folder (default: the embedded model)")
    parser.add_argument("--recipes", nargs="+", default=["model", "release"], help="recipe specs (see `dicetalk generate --recipe`)")
    parser.add_argument("--emotions", default="neutral,happy,surprised,angry", help="comma-separated, or `all`")
    parser.add_argument("--levels", default="3", help="comma-separated intensity levels (neutral is level 1)")
    parser.add_argument("--mode", default="label", choices=("label", "reference", "other-identity"),
                        help="emotion condition: the label's prompt prior, another clip of the person, or a clip of another person")
    parser.add_argument("--reference-frame", default="clip", choices=("clip", "neutral"), help="the clip's first frame or the person's neutral frame")
    parser.add_argument("--max-frames", type=int, default=50, help="frames per clip (from its start)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from dicetalk.evaluation.evaluate import collect_generated, collect_ground_truth, evaluate_items
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.render import RenderOptions, render_autoencoder_set, render_evaluation_set
    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.pipeline.recipe import parse_recipe

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    counter = EvalCounter(pipe.unet)
    judges = load_judges().eval()
    emotions = EMOTIONS if args.emotions == "all" else tuple(args.emotions.split(","))
    common = dict(dataset=args.dataset, weights=args.weights, split=args.split, emotions=emotions, levels=tuple(int(v) for v in args.levels.split(",")),
                  reference_frame=args.reference_frame, max_frames=args.max_frames)  # fmt: skip
    root = Path(args.out) / args.split
    rows = []
    for spec in args.recipes:
        recipe = parse_recipe(spec, pipe.recipe)
        folder = root / folder_name(spec)
        counter.frames = 0
        before = set(folder.glob("*.mp4")) if folder.is_dir() else set()
        start = time.perf_counter()
        videos = render_evaluation_set(RenderOptions(out=str(folder), mode=args.mode, recipe=spec, **common), pipe=pipe, progress=True)
        wall = time.perf_counter() - start
        items, warnings = collect_generated(folder, args.dataset, split=args.split)
        report = evaluate_items(items, judges=judges, progress=False, warnings=warnings)
        report["recipe"] = recipe.to_dict()
        (folder / "report.json").write_text(json.dumps(report, indent=1))
        frames = sum(video_frames(v) for v in videos if v not in before)  # rendered by this run
        timing = folder / "timing.json"  # kept from the run that rendered the videos
        if frames:
            timing.write_text(json.dumps({"unet_evals_per_frame": counter.frames / frames, "seconds_per_video_second": wall / (frames / recipe.fps)}))
        measured = json.loads(timing.read_text()) if timing.is_file() else {}
        rows.append((f"{spec}: {recipe.describe()}", measured.get("unet_evals_per_frame"), measured.get("seconds_per_video_second"), report))

    # The same source clips through the autoencoder alone, and ground truth scored as if generated.
    folder = root / "autoencoder"
    render_autoencoder_set(RenderOptions(out=str(folder), **common), pipe=pipe, progress=False)
    items_ae, warnings = collect_generated(folder, args.dataset, split=args.split)
    rows.append(("autoencoder round trip (no diffusion)", None, None, evaluate_items(items_ae, judges=judges, progress=False, warnings=warnings)))
    sources = {it.source.relative for it in items}
    truth = [it for it in collect_ground_truth(args.dataset, split=args.split) if it.source.relative in sources]
    rows.append(("ground truth (whole clips)", None, None, evaluate_items(truth, judges=judges, progress=False)))

    def fmt(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    def ci(report, key, digits=3):
        interval = report.get(f"{key}_ci") or {}
        if interval.get("low") is None:
            return fmt(report.get(key), digits)
        return f"{interval['value']:.{digits}f} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"

    keys = ("emo_score", "emo_score_all8", "fsim", "sync_c", "sync_d", "mouth_error", "mouth_open_corr")
    print(f"split {args.split}: {len(items)} clips; 95 % bootstrap intervals over clips")
    print("| recipe | UNet evals / frame | s / video s | Emo-Score | Emo-Score (8) | F-SIM | Sync-C | Sync-D | mouth error | mouth opening corr | FVD |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for text, evals, speed, r in rows:
        cells = " | ".join(ci(r, k) for k in keys)
        print(f"| {text} | {fmt(evals, 1)} | {fmt(speed, 2)} | {cells} | {fmt(r.get('fvd'), 1)} |")


if __name__ == "__main__":
    main()
