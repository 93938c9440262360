"""Writes the synthetic world as MEAD-like and HDTF-like datasets.

Layout of ``OUT``::

    world.json                                   preset, seed, options, vocabularies, identities
    splits.json                                  identities per split (by identity: test never in train)
    mead/<identity>/<emotion>/level_<k>/<clip>.{mp4,safetensors,json}
    hdtf/<identity>/<clip>.{mp4,safetensors,json}

Each clip is an H.264 mp4 at 25 fps with its speech as the audio track (the source of truth
for audio), a safetensors file of per-frame ``expression`` (T, 12), ``pose`` (T, 3) and
``face_box`` (T, 4) float32, and a JSON description.

Determinism: every random draw comes from the seed and the identity/clip numbers, never
from global state or process order, so the same seed gives byte-identical ``.safetensors``
and ``.json`` files whatever the number of workers.

Re-running: every file is written atomically and a clip's JSON is written last, so a clip
is complete exactly when its JSON exists. Running again over the same ``OUT`` with the same
preset, seed and options skips complete clips and finishes the rest (resuming a killed
run); a different world in ``OUT`` is refused with one clear error.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import operator
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import EMOTIONS, __version__
from ..errors import InputError
from ..utils.atomic import write_bytes, write_json
from ..utils.media import DEFAULT_CRF, SPEECH_SAMPLE_RATE, VideoWriter
from .expressions import EMOTION_TARGETS, EXPRESSION_NAMES, LEVEL_INTENSITY, POSE_NAMES, emotion_expression, emotion_levels
from .face import FaceRenderer
from .identity import sample_identity
from .motion import FPS, animate
from .speech import SENTENCES, emotion_prosody, fit_to_frames, require_espeak, synthesize

FORMAT_VERSION = 1
MIN_SIZE, MAX_SIZE = 64, 256
SPLITS = ("train", "val", "test")
HDTF_INDEX_OFFSET = 10_000  # HDTF identities are numbered apart, so MEAD counts never change them
_CLIP_STREAM = 7
_SENTENCE_STREAM = 8


@dataclass(frozen=True)
class Preset:
    """How much world to generate. ``levels`` are those of the non-neutral emotions."""

    name: str
    size: int
    identities: int  # MEAD-like identities, split train/val/test by ``split_ratio``
    hdtf_identities: int
    emotions: tuple[str, ...]
    levels: tuple[int, ...]
    sentences: int  # clips (one sentence each) per identity, emotion and level
    hdtf_clips: int  # clips per HDTF identity
    hdtf_sentences: int  # sentences spoken in one HDTF clip
    split_ratio: tuple[int, int, int] = (4, 1, 1)

    def options(self) -> dict:
        out = asdict(self)
        del out["name"]
        return out


PRESETS = {
    # Unit tests: seconds on two CPU cores.
    "tiny": Preset(
        "tiny", size=64, identities=4, hdtf_identities=2, emotions=EMOTIONS, levels=(3,),
        sentences=1, hdtf_clips=1, hdtf_sentences=2, split_ratio=(2, 1, 1),
    ),
    # Training small models and the judges.
    "default": Preset(
        "default", size=128, identities=24, hdtf_identities=8, emotions=EMOTIONS, levels=(1, 2, 3),
        sentences=3, hdtf_clips=4, hdtf_sentences=4,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ClipJob:
    """Everything a worker needs to make one clip: a pure function of these fields."""

    out_dir: str
    relative: str  # path of the clip without suffix, relative to out_dir
    dataset: str  # "mead" or "hdtf"
    seed: int
    size: int
    identity_index: int
    identity: str
    split: str
    emotion: str | None
    level: int | None
    clip_number: int
    sentence_ids: tuple[int, ...]

    @property
    def stem(self) -> Path:
        return Path(self.out_dir) / self.relative

    def is_complete(self) -> bool:
        return all(self.stem.with_suffix(s).is_file() for s in (".json", ".mp4", ".safetensors"))


@dataclass
class SynthesisSummary:
    """What :func:`generate_dataset` did."""

    out_dir: Path
    preset: str
    seed: int
    clips: int  # clips in the world
    generated: int  # clips written by this run
    skipped: int  # clips already complete
    frames: int  # frames written by this run
    seconds: float


def resolve_options(preset: str, **overrides) -> Preset:
    """The preset with overrides applied and checked; raises :class:`InputError` on a bad option."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    unknown = set(overrides) - (set(Preset.__dataclass_fields__) - {"name"})
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))}")
    options = replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    try:  # plain ints (numpy integers would not serialise to JSON)
        counts = {k: operator.index(getattr(options, k)) for k in ("size", "identities", "hdtf_identities", "sentences", "hdtf_clips", "hdtf_sentences")}
        options = replace(options, **counts, levels=tuple(operator.index(v) for v in options.levels))
    except TypeError:
        raise InputError("size, identities, hdtf_identities, sentences, hdtf_clips, hdtf_sentences and levels must be integers") from None
    if not MIN_SIZE <= options.size <= MAX_SIZE:
        raise InputError(f"size must be {MIN_SIZE}..{MAX_SIZE} pixels, got {options.size}")
    if options.identities < 1 or options.hdtf_identities < 0:
        raise InputError(f"need at least 1 MEAD identity and 0 or more HDTF identities, got {options.identities} and {options.hdtf_identities}")
    if not 1 <= options.sentences <= len(SENTENCES):
        raise InputError(f"sentences must be 1..{len(SENTENCES)} per emotion and level, got {options.sentences}")
    if options.hdtf_identities and not (options.hdtf_clips >= 1 and 1 <= options.hdtf_sentences <= len(SENTENCES)):
        raise InputError(f"hdtf_clips must be at least 1 and hdtf_sentences 1..{len(SENTENCES)}")
    bad = [e for e in options.emotions if e not in EMOTIONS] + [str(v) for v in options.levels if v not in LEVEL_INTENSITY]
    if bad or not options.emotions or not options.levels:
        raise InputError(f"emotions must come from {', '.join(EMOTIONS)} and levels from 1, 2, 3; got {', '.join(bad) or 'none'}")
    return replace(options, emotions=tuple(options.emotions), levels=tuple(sorted(set(options.levels))))


def split_counts(n: int, ratio: tuple[int, int, int]) -> tuple[int, int, int]:
    """Identities per (train, val, test): test and val get at least one each once n allows."""
    total = sum(ratio)
    test = max(1, round(n * ratio[2] / total)) if n >= 2 else 0
    val = max(1, round(n * ratio[1] / total)) if n >= 3 else 0
    return n - val - test, val, test


def identity_names(options: Preset) -> dict[str, list[tuple[str, int, str]]]:
    """(name, index, split) of every identity, per dataset; the first ones train, the last ones test."""
    out: dict[str, list[tuple[str, int, str]]] = {}
    for dataset, count, offset in (("mead", options.identities, 0), ("hdtf", options.hdtf_identities, HDTF_INDEX_OFFSET)):
        counts = split_counts(count, options.split_ratio)
        splits = [s for s, k in zip(SPLITS, counts) for _ in range(k)]
        out[dataset] = [(f"{dataset}_{i:03d}", offset + i, splits[i]) for i in range(count)]
    return out


def _sentence_ids(seed: int, identity_index: int, key: tuple[int, ...], count: int) -> tuple[int, ...]:
    rng = np.random.default_rng([seed, _SENTENCE_STREAM, identity_index, *key])
    return tuple(int(i) for i in rng.choice(len(SENTENCES), size=count, replace=False))


def plan_clips(out_dir: Path, options: Preset, seed: int) -> list[ClipJob]:
    """Every clip of the world, in a fixed order."""
    jobs: list[ClipJob] = []
    common = dict(out_dir=str(out_dir), seed=seed, size=options.size)
    names = identity_names(options)
    for name, index, split in names["mead"]:
        for emotion in options.emotions:
            levels = emotion_levels(emotion) if emotion == "neutral" else options.levels
            for level in levels:
                # The same script per emotion and level for everyone would be closer to MEAD; drawing
                # per identity instead varies the sentences seen with each emotion.
                sentences = _sentence_ids(seed, index, (EMOTIONS.index(emotion), level), options.sentences)
                for k, sentence in enumerate(sentences):
                    jobs.append(ClipJob(
                        relative=f"mead/{name}/{emotion}/level_{level}/{k + 1:03d}", dataset="mead",
                        identity_index=index, identity=name, split=split, emotion=emotion, level=level,
                        clip_number=k + 1, sentence_ids=(sentence,), **common,
                    ))  # fmt: skip
    for name, index, split in names["hdtf"]:
        for k in range(options.hdtf_clips):
            sentences = _sentence_ids(seed, index, (100, k), options.hdtf_sentences)
            jobs.append(ClipJob(
                relative=f"hdtf/{name}/{k + 1:03d}", dataset="hdtf", identity_index=index, identity=name,
                split=split, emotion=None, level=None, clip_number=k + 1, sentence_ids=sentences, **common,
            ))  # fmt: skip
    return jobs


def world_description(options: Preset, seed: int) -> dict:
    """Contents of ``world.json``: what was generated and the vocabularies needed to read it."""
    identities = {}
    for dataset, entries in identity_names(options).items():
        for name, index, split in entries:
            identities[name] = {**sample_identity(seed, index, name).to_json(), "dataset": dataset, "split": split}
    return {
        "format_version": FORMAT_VERSION,
        "dicetalk_version": __version__,
        "preset": options.name,
        "seed": seed,
        "options": options.options(),
        "fps": FPS,
        "sample_rate": SPEECH_SAMPLE_RATE,
        "expression_names": list(EXPRESSION_NAMES),
        "pose_names": list(POSE_NAMES),
        "pose_units": "radians",
        "emotions": list(EMOTIONS),
        "emotion_targets": {e: [round(float(v), 4) for v in EMOTION_TARGETS[e]] for e in EMOTIONS},
        "level_intensity": {str(k): v for k, v in LEVEL_INTENSITY.items()},
        "identities": identities,
    }


def splits_description(options: Preset) -> dict:
    """Contents of ``splits.json``: identity names per split, overall and per dataset."""
    names = identity_names(options)
    per_dataset = {d: {s: [n for n, _, split in entries if split == s] for s in SPLITS} for d, entries in names.items()}
    overall = {s: sorted(n for d in per_dataset.values() for n in d[s]) for s in SPLITS}
    return {**overall, "datasets": per_dataset}


def make_clip(job: ClipJob) -> int:
    """Generate and write one clip (mp4, safetensors, then json); returns its number of frames."""
    from safetensors.numpy import save

    identity = sample_identity(job.seed, job.identity_index, job.identity)
    # The clip's own random stream, from its coordinates in the world (entropy must be >= 0).
    dataset_code = 1 if job.dataset == "mead" else 2
    emotion_code = 0 if job.emotion is None else EMOTIONS.index(job.emotion) + 1
    coordinates = [job.identity_index, dataset_code, emotion_code, (job.level or 0) + 1, job.clip_number + 1]
    rng = np.random.default_rng([job.seed, _CLIP_STREAM, *coordinates])
    text = " ".join(SENTENCES[i] for i in job.sentence_ids)
    prosody = emotion_prosody(job.emotion, job.level or 1)
    audio, num_frames = fit_to_frames(synthesize(text, identity.voice, prosody), FPS)
    base = None if job.emotion is None else emotion_expression(job.emotion, job.level, identity.habits)
    expression, pose = animate(audio, num_frames, identity.habits, rng, job.emotion, job.level or 1, base)

    stem = job.stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    for stale in stem.parent.glob(f".{stem.name}.*.tmp.*"):  # left by a killed run
        stale.unlink(missing_ok=True)
    renderer = FaceRenderer(identity.appearance, job.size)
    boxes = np.empty((num_frames, 4), np.float32)
    with VideoWriter(stem.with_suffix(".mp4"), FPS, audio, SPEECH_SAMPLE_RATE, crf=DEFAULT_CRF) as writer:  # the world's clips as first made
        chunk = []
        for t in range(num_frames):
            frame, boxes[t] = renderer.render(expression[t], pose[t])
            chunk.append(frame)
            if len(chunk) == FPS or t == num_frames - 1:
                writer.write(np.stack(chunk))
                chunk = []
        writer.finish()
    # No safetensors metadata: its header map has no fixed order, and the JSON says it all.
    tensors = {"expression": expression, "pose": pose, "face_box": boxes}
    write_bytes(stem.with_suffix(".safetensors"), save({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}))
    write_json(stem.with_suffix(".json"), {
        "dataset": job.dataset,
        "identity": job.identity,
        "emotion": job.emotion,
        "level": job.level,
        "clip": stem.name,
        "sentence": text,
        "sentence_ids": list(job.sentence_ids),
        "voice": {**identity.voice.to_json(), "prosody": prosody.to_json()},
        "split": job.split,
        "fps": FPS,
        "num_frames": num_frames,
        "sample_rate": SPEECH_SAMPLE_RATE,
        "num_samples": int(audio.size),
        "size": job.size,
        "seed": job.seed,
        "expression_names": list(EXPRESSION_NAMES),
        "pose_names": list(POSE_NAMES),
        "face_box_format": "x0 y0 x1 y1 (frame pixels)",
    })  # fmt: skip
    return num_frames


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the processes


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _prepare_out_dir(out_dir: Path, world: dict) -> None:
    """Create OUT, or accept it if it holds this very world; refuse anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; the output must be a folder")
    world_file = out_dir / "world.json"
    if world_file.is_file():
        try:
            existing = json.loads(world_file.read_text())
        except ValueError:
            existing = None
        if existing != json.loads(json.dumps(world)):
            raise InputError(f"{out_dir} holds a different synthetic world (another preset, seed or options); choose another folder or delete it")
    elif out_dir.is_dir() and any(".tmp." not in p.name for p in out_dir.iterdir()):  # a killed first write may leave a temp file
        raise InputError(f"{out_dir} is not empty and holds no world.json; choose an empty or new folder")
    out_dir.mkdir(parents=True, exist_ok=True)


def generate_dataset(
    out_dir: str | os.PathLike,
    preset: str = "tiny",
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: bool = True,
    **overrides,
) -> SynthesisSummary:
    """Generate the synthetic world into ``out_dir`` (see the module docstring for the layout).

    ``overrides`` replace fields of the preset: ``size`` (64..256), ``identities`` (MEAD-like),
    ``hdtf_identities``, ``sentences`` (clips per identity, emotion and level), ``emotions``,
    ``levels``, ``hdtf_clips``, ``hdtf_sentences``. ``workers`` processes share the clips
    (default: all cores); the output does not depend on it. Raises :class:`InputError` for a
    bad option, an unusable ``out_dir`` or a missing espeak-ng.
    """
    from tqdm import tqdm

    options = resolve_options(preset, **overrides)
    try:
        seed = operator.index(seed)
        workers = default_workers() if workers is None else operator.index(workers)
    except TypeError:
        raise InputError(f"seed and workers must be integers, got {seed!r} and {workers!r}") from None
    if seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    require_espeak()
    started = time.perf_counter()
    world = world_description(options, seed)
    _prepare_out_dir(out_dir, world)
    if not (out_dir / "world.json").is_file():
        write_json(out_dir / "world.json", world)
    write_json(out_dir / "splits.json", splits_description(options))

    jobs = plan_clips(out_dir, options, seed)
    todo = [job for job in jobs if not job.is_complete()]
    # Longest clips first keeps the workers evenly busy to the end.
    todo.sort(key=lambda job: -len(job.sentence_ids))
    frames = 0
    with tqdm(total=len(todo), desc="synth", unit="clip", disable=not progress, dynamic_ncols=True) as bar:
        if workers == 1 or len(todo) <= 1:
            for job in todo:
                frames += make_clip(job)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads (torch, OpenCV)
            with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=context, initializer=_init_worker) as pool:
                futures = [pool.submit(make_clip, job) for job in todo]
                try:
                    for future in concurrent.futures.as_completed(futures):
                        frames += future.result()
                        bar.update()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    return SynthesisSummary(
        out_dir=out_dir,
        preset=options.name,
        seed=seed,
        clips=len(jobs),
        generated=len(todo),
        skipped=len(jobs) - len(todo),
        frames=frames,
        seconds=time.perf_counter() - started,
    )
