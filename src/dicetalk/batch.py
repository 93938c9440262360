"""Many videos in one run: ``dicetalk batch JOBS --out DIR`` (and :func:`run_batch`).

JOBS is a JSON Lines file (one object a line) or a CSV file (a header row, then one job a row);
its fields are :data:`JOB_FIELDS`, ``image`` and ``audio`` required, paths relative to JOBS' folder.
Every line is checked before anything renders: a malformed JOBS is refused with its line number.

- The pipeline loads once per process (one per model kind), not once per video.
- Resumable: a job whose output exists is skipped (outputs are written atomically, so an existing
  output is a complete one); ``DIR/batch.jsonl`` gets one line per job as it ends (done, failed
  with its one-line error, skipped) with its seconds, each line flushed to the disk.
- A bad job is recorded and the batch goes on; the exit status is 0 only if no job failed.
- Under ``accelerate launch --num_processes N dicetalk batch ...`` the jobs are split across the
  processes by index (job ``i`` on process ``i % N``: none runs twice), each process with its own
  model on its own device; the main process merges the records and writes the summary. A video
  depends only on its job (the seed is the job's), not on the process that rendered it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import DiceTalkError, InputError
from .pipeline.options import GenerateOptions
from .pipeline.recipe import parse_field_value
from .utils.atomic import write_json

# What a job may set: generate's per-video options (the model's weights, device and limits are the batch's).
JOB_FIELDS = ("image", "audio", "output", "emotion", "model", "recipe", "seed", "crop", "size", "steps", "sampler",
              "identity_scale", "emotion_scale", "fps", "transition", "stream")  # fmt: skip
RECORDS = "batch.jsonl"
SUMMARY = "summary.json"
_TYPES = {f.name: str(f.type) for f in dataclasses.fields(GenerateOptions)}


@dataclass(frozen=True)
class Job:
    index: int  # 0-based position in JOBS
    line: int  # its line in JOBS, for messages
    options: GenerateOptions

    @property
    def name(self) -> str:
        return self.options.output.name


@dataclass
class BatchSummary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)  # {"line", "output", "error"}

    @property
    def ok(self) -> bool:
        return self.failed == 0


# ----------------------------------------------------------------------------------------- reading JOBS
def read_jobs(path: str | os.PathLike, out_dir: str | os.PathLike, defaults: dict[str, Any] | None = None) -> list[Job]:
    """Every job of ``path``, checked; an :class:`InputError` naming the first bad line."""
    path, out_dir = Path(path), Path(out_dir)
    if path.is_dir() or not path.is_file():
        raise InputError(f"jobs file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"jobs file {path}: cannot be read ({type(exc).__name__})") from None
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text)
    if not rows:
        raise InputError(f"jobs file {path}: no jobs")
    jobs, names = [], {}
    for index, (line, row) in enumerate(rows):
        options = _options(path, line, row, out_dir, defaults or {})
        if options.output.name in names:
            raise InputError(f"{path} line {line}: output {options.output.name} is also line {names[options.output.name]}'s")
        names[options.output.name] = line
        jobs.append(Job(index, line, options))
    return jobs


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"{path} line {line}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path} line {line}: a job must be a JSON object, e.g. {{\"image\": \"a.png\", \"audio\": \"a.wav\"}}")
        rows.append((line, row))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise InputError(f"{path}: no header row (e.g. image,audio,emotion)")
    header = [h.strip() for h in header]
    rows = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise InputError(f"{path} line {line}: {len(values)} values for {len(header)} columns")
        row = {}
        for key, value in zip(header, values):
            value = value.strip()
            if value == "":
                continue  # an empty cell: the default
            if key in _TYPES and key not in ("image", "audio", "output"):
                value = parse_field_value(_TYPES[key], key, value, f"{path} line {line}")
            row[key] = value
        rows.append((line, row))
    return rows


def _options(path: Path, line: int, row: dict[str, Any], out_dir: Path, defaults: dict[str, Any]) -> GenerateOptions:
    where = f"{path} line {line}"
    unknown = sorted(set(row) - set(JOB_FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(JOB_FIELDS)}")
    for key in ("image", "audio"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise InputError(f"{where}: {key} is required (a path relative to the jobs file)")
    if "output" in row and not isinstance(row["output"], str):
        raise InputError(f"{where}: output must be a file name")
    values = {**defaults, **row}
    image, audio = (path.parent / row["image"]), (path.parent / row["audio"])
    name = row.get("output") or _default_name(image, audio, values)
    if Path(name).name != name or name in (".", ".."):
        raise InputError(f"{where}: output {name!r} must be a file name under the output folder, not a path")
    if "model" in values and values["model"] == "emotivetalk" and "emotion" not in row:
        values["emotion"] = "speech"
    try:
        return GenerateOptions(**{**values, "image": image, "audio": audio, "output": out_dir / name})
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    except TypeError:  # a value of the wrong kind GenerateOptions' checks did not name
        raise InputError(f"{where}: a field has a value of the wrong type") from None


def _default_name(image: Path, audio: Path, values: dict[str, Any]) -> str:
    emotion = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(values.get("emotion", "neutral")))[:40].strip("-.") or "emotion"
    return f"{image.stem}_{audio.stem}_{emotion}_{values.get('seed', 0)}.mp4"


# ------------------------------------------------------------------------------------------- running
def run_batch(
    jobs_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    max_seconds: float = 600.0,
    performance: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Render every job of ``jobs_path`` into ``out_dir`` (see the module docstring); the main
    process's :class:`BatchSummary` (other processes return their own share)."""
    out_dir = Path(out_dir)
    base = {"weights": weights, "device": device, "max_seconds": max_seconds, "performance": performance}
    jobs = read_jobs(jobs_path, out_dir, base)  # every line checked before anything loads
    rank, world, barrier = _processes()
    mine = [job for job in jobs if job.index % world == rank]
    out_dir.mkdir(parents=True, exist_ok=True)
    records = out_dir / (RECORDS if world == 1 else f".batch.rank{rank}.jsonl")
    if world > 1:
        records.unlink(missing_ok=True)
    summary = _render(mine, records, world, rank, progress, log)
    barrier()
    if world > 1 and rank == 0:
        _merge(out_dir, world)
    if rank == 0:
        summary = summarize(out_dir / RECORDS, jobs) if world > 1 else summary
        write_json(out_dir / SUMMARY, {"done": summary.done, "failed": summary.failed, "skipped": summary.skipped,
                                       "seconds": round(summary.seconds, 3), "failures": summary.failures, "processes": world})  # fmt: skip
    return summary


def _processes() -> tuple[int, int, Callable[[], None]]:
    """(this process's rank, number of processes, barrier): accelerate's when launched by it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, lambda: None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # CPU processes (gloo) when launched with --cpu
    return state.process_index, state.num_processes, state.wait_for_everyone


def _render(jobs: list[Job], records: Path, world: int, rank: int, progress: bool, log) -> BatchSummary:
    from tqdm.auto import tqdm

    summary = BatchSummary()
    pipelines: dict[str, Any] = {}
    bar = tqdm(total=len(jobs), desc=f"batch{f' [{rank}]' if world > 1 else ''}", unit="video", position=rank, disable=not progress, leave=True)
    try:
        for job in jobs:
            bar.set_postfix_str(job.name)
            start = time.perf_counter()
            if job.options.output.is_file():
                state, error = "skipped", None
            else:
                state, error = _one(job, pipelines, lambda fraction, stage: bar.set_postfix_str(f"{job.name}: {stage}"))
            seconds = time.perf_counter() - start
            _record(records, {"line": job.line, "output": job.name, "state": state, "error": error, "seconds": round(seconds, 3)})
            setattr(summary, state, getattr(summary, state) + 1)
            summary.seconds += seconds
            if error is not None:
                summary.failures.append({"line": job.line, "output": job.name, "error": error})
                if log is not None:
                    log(f"line {job.line} ({job.name}) failed: {error}")
            bar.update(1)
    finally:
        bar.close()
    return summary


def _one(job: Job, pipelines: dict[str, Any], report) -> tuple[str, str | None]:
    """("done", None) or ("failed", its one-line error)."""
    from .pipeline.generate import generate_video

    opts = job.options
    try:
        opts.check()
        pipe = pipelines.get(opts.model)
        if pipe is None:
            pipe = pipelines[opts.model] = _load(opts)
        generate_video(opts, progress=report, pipeline=pipe)
        return "done", None
    except DiceTalkError as exc:
        return "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - one job's internal error must not stop the others
        return "failed", f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _load(opts: GenerateOptions):
    """The pipeline a job of ``opts.model`` runs on, loaded once per process."""
    import torch

    from .pipeline.generate import resolve_device

    device = resolve_device(opts.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if opts.model == "emotivetalk":
        from .pipeline.emotivetalk import load_emotivetalk_pipeline

        pipe = load_emotivetalk_pipeline(opts.weights, device=device, dtype=dtype)
    else:
        from .pipeline.loading import load_pipeline

        pipe = load_pipeline(opts.weights, device=device, dtype=dtype, performance=opts.performance)
    pipe.set_progress_bar_config(disable=True)  # the batch's bar shows the job's stage
    return pipe


def _record(path: Path, entry: dict[str, Any]) -> None:
    """One line appended and flushed to the disk: a kill loses at most the job that was running."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _merge(out_dir: Path, world: int) -> None:
    """The processes' records appended to ``batch.jsonl`` in job order, their own files removed."""
    entries = []
    for rank in range(world):
        part = out_dir / f".batch.rank{rank}.jsonl"
        if part.is_file():
            entries += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    for entry in sorted(entries, key=lambda e: e["line"]):
        _record(out_dir / RECORDS, entry)
    for rank in range(world):
        (out_dir / f".batch.rank{rank}.jsonl").unlink(missing_ok=True)


def summarize(records: Path, jobs: list[Job]) -> BatchSummary:
    """The latest state of each of ``jobs`` in ``records`` (a rerun appends; its lines win)."""
    latest: dict[int, dict[str, Any]] = {}
    if records.is_file():
        for line in records.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                latest[entry["line"]] = entry
    summary = BatchSummary()
    for job in jobs:
        entry = latest.get(job.line)
        if entry is None:
            continue
        setattr(summary, entry["state"], getattr(summary, entry["state"]) + 1)
        summary.seconds += entry["seconds"]
        if entry["state"] == "failed":
            summary.failures.append({"line": job.line, "output": job.name, "error": entry["error"]})
    return summary
