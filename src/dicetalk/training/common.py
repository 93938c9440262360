"""What every training loop shares: the run folder, options, atomic checkpoints, resume, logging.

Small flat loops (as in NVlabs/edm and k-diffusion) call these helpers:

* ``RUN/options.json`` — the options of the run, written when it starts; a resumed run must
  have the same options (the number of steps may grow);
* ``RUN/checkpoints/step_XXXXXXX/`` — every trained module (``save_pretrained``, safetensors)
  and the optimizer state (safetensors + json), written to a temporary folder and renamed, so
  a kill never leaves a half-written checkpoint; ``RUN/checkpoints/latest`` names the newest;
* determinism: every random draw of step ``t`` comes from ``(seed, t)``, so a resumed run
  reproduces the loss curve of an uninterrupted one;
* TensorBoard logs through Accelerate (``RUN/logs``); a tqdm bar on the main process.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..utils.atomic import atomic_dir, write_json, write_text

CHECKPOINTS = "checkpoints"


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A 63-bit seed for the random draws of one step of one process."""
    return (seed * 1_000_003 + step * 8_191 + rank * 131_071) % (1 << 63)


def options_dict(options: Any) -> dict:
    d = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    return json.loads(json.dumps(d, default=str))


def _defaults(options: Any) -> dict:
    if not dataclasses.is_dataclass(options):
        return {}
    fields = dataclasses.fields(options)
    return json.loads(json.dumps({f.name: f.default for f in fields if f.default is not dataclasses.MISSING}, default=str))


# Options that may change on --resume: the target length and bookkeeping that leaves every
# sample and update as it was (data are a pure function of (seed, step), whatever the workers).
RESUMABLE = ("steps", "save_every", "log_every", "workers", "cache_dir")


class Run:
    """A run folder: options, checkpoints and the step to resume from."""

    def __init__(self, folder: str | Path, options: Any, resume: bool, is_main: bool = True, resumable_keys: tuple[str, ...] = RESUMABLE):
        self.folder = Path(folder)
        self.is_main = is_main
        self.history: list[tuple[int, float]] = []  # (step, loss) of the steps run in this process
        self.options = options_dict(options)
        saved = self.folder / "options.json"
        if self.latest() is not None and not resume:
            raise InputError(f"{self.folder} already holds a run; pass --resume to continue it or choose another folder")
        if resume and saved.is_file():
            # An option added after the run began reads as its default (the run trained without it).
            previous = {**_defaults(options), **json.loads(saved.read_text())}
            changed = sorted(k for k in set(previous) | set(self.options) if k not in resumable_keys and previous.get(k) != self.options.get(k))
            if changed:
                raise InputError(f"cannot resume {self.folder} with different options: {', '.join(changed)}")
        if is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(saved, self.options)

    # -------------------------------------------------------------- checkpoints
    def latest(self) -> Path | None:
        pointer = self.folder / CHECKPOINTS / "latest"
        if not pointer.is_file():
            return None
        path = self.folder / CHECKPOINTS / pointer.read_text().strip()
        return path if path.is_dir() else None

    def save(self, step: int, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer | None, keep: int = 2) -> Path:
        """Write a checkpoint of ``modules`` and the optimizer at ``step`` (main process only)."""
        name = f"step_{step:07d}"
        target = self.folder / CHECKPOINTS / name
        if self.is_main:
            with atomic_dir(target) as tmp:
                for key, module in modules.items():
                    module.save_pretrained(tmp / key, safe_serialization=True)
                if optimizer is not None:
                    tensors, meta = _optimizer_state(optimizer)
                    save_file(tensors, str(tmp / "optimizer.safetensors"))
                    (tmp / "optimizer.json").write_text(json.dumps(meta))
                (tmp / "state.json").write_text(json.dumps({"step": step}))
            write_text(self.folder / CHECKPOINTS / "latest", name + "\n")
            old = sorted(p for p in (self.folder / CHECKPOINTS).glob("step_*") if p.is_dir() and p.name != name)
            for p in old[: max(0, len(old) - (keep - 1))]:
                shutil.rmtree(p, ignore_errors=True)
        return target

    def load(self, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer | None) -> int:
        """Restore the newest checkpoint into ``modules`` and the optimizer; the step to continue from."""
        path = self.latest()
        if path is None:
            return 0
        for key, module in modules.items():
            if not (path / key).is_dir():
                raise InputError(f"checkpoint {path} lacks {key}")
            load_weights(module, path / key)
        if optimizer is not None and (path / "optimizer.safetensors").is_file():
            optimizer.load_state_dict(
                _optimizer_from(load_file(str(path / "optimizer.safetensors")), json.loads((path / "optimizer.json").read_text()))
            )
        return int(json.loads((path / "state.json").read_text())["step"])


def load_weights(module: torch.nn.Module, folder: Path, new_paths: tuple[str, ...] = ()) -> None:
    """Load the safetensors weights in ``folder`` into ``module``, with one clear error on a mismatch.

    Top-level submodules named in ``new_paths`` (zero-initialised additions of a configuration)
    may be absent from ``folder``: they keep their initial values.
    """
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise InputError(f"{folder} holds no safetensors weights")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    own = module.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if unexpected or mismatched:
        raise InputError(f"{folder} does not fit the configuration ({', '.join((unexpected + mismatched)[:3])} ...)")
    missing = [k for k in own if k not in state and k.split(".")[0] not in new_paths]
    if missing:
        raise InputError(f"{folder} lacks {', '.join(missing[:3])} ...")
    module.load_state_dict(state, strict=False)


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors = {}
    scalars = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def make_accelerator(folder: Path, mixed_precision: str = "no", log: bool = True):
    """An Accelerate accelerator with TensorBoard logging into ``folder/logs``."""
    from accelerate import Accelerator

    kwargs = {"log_with": "tensorboard", "project_dir": str(folder / "logs")} if log else {}
    accelerator = Accelerator(mixed_precision=mixed_precision, **kwargs)
    if log:
        accelerator.init_trackers("dicetalk")
    return accelerator


def lr_at(step: int, lr: float, warmup: int, steps: int | None = None) -> float:
    """Linear warm-up, then constant; with ``steps``, a cosine decay to 0 over the run."""
    scale = min(1.0, (step + 1) / max(1, warmup))
    if steps is not None:
        scale *= 0.5 * (1.0 + math.cos(math.pi * step / steps))
    return lr * scale


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


SAMPLE_LOG_ENV = "DICETALK_LOG_SAMPLES"
"""Set to 1 to have every process record the dataset indices its sampler drew, step by step, in
``RUN/logs/samples_rank<R>.jsonl`` (one ``{"step", "rank", "world", "indices"}`` line per step):
evidence that the processes of a distributed run read different data."""


class StepIndices(torch.utils.data.Sampler):
    """Dataset indices of steps ``[start, stop)`` for one process: sample ``t * global + rank * local + i``.

    With ``log`` (a file), each step's indices are appended to it as they are drawn.
    """

    def __init__(self, start: int, stop: int, batch: int, rank: int = 0, world: int = 1, log: str | Path | None = None):
        self.start, self.stop, self.batch, self.rank, self.world, self.log = start, stop, batch, rank, world, log

    def __iter__(self):
        per_step = self.batch * self.world
        for t in range(self.start, self.stop):
            base = t * per_step + self.rank * self.batch
            if self.log is not None:
                line = {"step": t, "rank": self.rank, "world": self.world, "indices": list(range(base, base + self.batch))}
                with open(self.log, "a") as f:
                    f.write(json.dumps(line) + "\n")
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.batch


def step_loader(dataset, sampler: StepIndices, batch: int, collate_fn, workers: int = 0) -> torch.utils.data.DataLoader:
    """The data loader of a training loop: ``batch`` items per step in ``sampler``'s order.

    Workers are spawned, never forked: a forked child of a process whose torch or OpenCV thread
    pools have run can deadlock (a CI run hung on it). Memory-mapped caches reopen their files
    in each worker (:mod:`dicetalk.data.mapped`) instead of being copied to it.
    """
    if workers < 0:
        raise InputError(f"--workers must be 0 or more, got {workers}")
    context = torch.multiprocessing.get_context("spawn") if workers > 0 else None
    return torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate_fn, multiprocessing_context=context)


def _batch_iterator(batches, start: int, run: Run, rank: int):
    """One batch per step from ``batches(start)``; its :class:`StepIndices` logs its draws when :data:`SAMPLE_LOG_ENV` asks."""
    if batches is None:
        return None
    loader = batches(start)
    sampler = getattr(loader, "sampler", None)
    if os.environ.get(SAMPLE_LOG_ENV, "") not in ("", "0") and isinstance(sampler, StepIndices):
        (run.folder / "logs").mkdir(parents=True, exist_ok=True)
        sampler.log = run.folder / "logs" / f"samples_rank{rank}.jsonl"
    return iter(loader)


class _Logger:
    """Running means of the step logs, written every ``log_every`` steps and at the last."""

    def __init__(self, accelerator, bar, log_every: int, steps: int):
        self.accelerator, self.bar, self.log_every, self.steps = accelerator, bar, log_every, steps
        self.running: dict[str, float] = {}
        self.logs: dict[str, float] = {}

    def add(self, step: int, step_logs: dict[str, float]) -> None:
        for k, v in step_logs.items():
            self.running[k] = self.running.get(k, 0.0) + v
        self.bar.update()
        if (step + 1) % self.log_every == 0 or step + 1 == self.steps:
            count = self.log_every if (step + 1) % self.log_every == 0 else (step + 1) % self.log_every
            self.logs = {k: v / count for k, v in self.running.items()}
            self.running = {}
            self.accelerator.log(self.logs, step=step + 1)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in self.logs.items() if k == "loss"})


def _prepare(accelerator, modules: dict[str, torch.nn.Module], optimizer):
    """The modules as the loss function sees them, and the optimizer, ready for ``accelerator``.

    One process: ``accelerator.prepare`` (device placement, mixed precision). Several: the
    modules stay plain modules on the process's device — loss functions call their own methods
    (``discriminator.loss``...), which a DistributedDataParallel wrapper hides and whose forward
    passes it would not synchronise — so rank 0's weights are broadcast once here and
    :func:`_average_gradients` averages the gradients after every backward pass.
    """
    if accelerator.num_processes == 1:
        prepared = accelerator.prepare(*modules.values(), optimizer)
        *wrapped, optimizer = prepared if isinstance(prepared, (tuple, list)) else (prepared,)
        wrapped = dict(zip(list(modules), wrapped))
    else:
        import torch.distributed as dist

        wrapped = {k: m.to(accelerator.device) for k, m in modules.items()}
        with torch.no_grad():
            for m in wrapped.values():
                for tensor in [*m.parameters(), *m.buffers()]:
                    dist.broadcast(tensor.data, src=0)
        optimizer = accelerator.prepare(optimizer)
    for m in wrapped.values():
        m.train()
    return wrapped, optimizer


def _average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the processes (in one flat all-reduce).

    A parameter no process produced a gradient for keeps none (the optimizer skips it, as in
    one process); one that some processes left without a gradient counts zero there.
    """
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    world = dist.get_world_size()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(has)
    live = [p for p, n in zip(params, has.tolist()) if n > 0]
    if not live:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in live]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for p, g in zip(live, _unflatten_dense_tensors(flat, grads)):
        p.grad = g


def fit(
    run: Run,
    accelerator,
    modules: dict[str, torch.nn.Module],
    loss_fn,
    steps: int,
    lr: float,
    seed: int,
    warmup: int = 100,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    save_every: int = 500,
    log_every: int = 25,
    batches=None,
    desc: str = "training",
    averages: dict[str, torch.nn.Module] | None = None,
    ema_decay: float = 0.998,
    cosine: bool = False,
) -> dict[str, float]:
    """The one training loop: AdamW on the trainable parameters of ``modules``.

    ``loss_fn(step, modules, batch, generator) -> (loss, logs)`` computes one step's loss
    (``batch`` comes from ``batches(first_step)``, an iterator of one batch per step, if given). Resumes from the
    run's newest checkpoint, saves every ``save_every`` steps and at the end.

    ``averages`` (name -> a copy of ``modules[name]``) are kept as exponential moving averages
    of the trained weights (decay ``ema_decay``) and checkpointed as ``<name>_ema``: the weights
    to use when single steps are noisy. ``cosine`` decays the learning rate to 0 at ``steps`` (so a
    run resumed with a new target follows another curve from there).
    """
    from tqdm.auto import tqdm

    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    averaged = {f"{k}_ema": m.requires_grad_(False).eval().to(accelerator.device) for k, m in (averages or {}).items()}
    pairs = [(list(averages[k].parameters()), list(modules[k].parameters())) for k in (averages or {})]
    start = run.load({**modules, **averaged}, optimizer)
    wrapped, optimizer = _prepare(accelerator, modules, optimizer)
    run.is_main = accelerator.is_main_process  # one process writes the checkpoints
    rank = accelerator.process_index
    bar = tqdm(total=steps, initial=start, desc=desc, disable=not accelerator.is_main_process, dynamic_ncols=True)
    logger = _Logger(accelerator, bar, log_every, steps)
    iterator = _batch_iterator(batches, start, run, rank)
    for step in range(start, steps):
        torch.manual_seed(step_seed(seed, step, rank))  # dropout and any other global draw
        generator = torch.Generator(device=accelerator.device).manual_seed(step_seed(seed, step, rank) ^ 0x5EED)
        set_lr(optimizer, lr_at(step, lr, warmup, steps if cosine else None))
        batch = next(iterator) if iterator is not None else None
        with accelerator.autocast():
            loss, step_logs = loss_fn(step, wrapped, batch, generator)
        accelerator.backward(loss)
        if accelerator.num_processes > 1:
            _average_gradients(params)
        if grad_clip:
            accelerator.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for avg, live in pairs:
                torch._foreach_lerp_(avg, live, 1.0 - ema_decay)
        step_logs = {"loss": float(loss.detach()), **{k: float(v) for k, v in step_logs.items()}}
        run.history.append((step, step_logs["loss"]))
        logger.add(step, step_logs)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            accelerator.wait_for_everyone()
            run.save(step + 1, {**{k: accelerator.unwrap_model(m) for k, m in wrapped.items()}, **averaged}, optimizer)
    bar.close()
    accelerator.end_training()
    return logger.logs
