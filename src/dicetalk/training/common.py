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


class StepIndices(torch.utils.data.Sampler):
    """Dataset indices of steps ``[start, stop)`` for one process: sample ``t * global + rank * local + i``."""

    def __init__(self, start: int, stop: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __iter__(self):
        per_step = self.batch * self.world
        for t in range(self.start, self.stop):
            base = t * per_step + self.rank * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.batch


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
    names = list(modules)
    prepared = accelerator.prepare(*modules.values(), optimizer)
    *wrapped, optimizer = prepared if isinstance(prepared, (tuple, list)) else (prepared,)
    wrapped = dict(zip(names, wrapped))
    for m in wrapped.values():
        m.train()
    rank = accelerator.process_index
    logs: dict[str, float] = {}
    running: dict[str, float] = {}
    bar = tqdm(total=steps, initial=start, desc=desc, disable=not accelerator.is_main_process, dynamic_ncols=True)
    iterator = iter(batches(start)) if batches is not None else None
    for step in range(start, steps):
        torch.manual_seed(step_seed(seed, step, rank))  # dropout and any other global draw
        generator = torch.Generator(device=accelerator.device).manual_seed(step_seed(seed, step, rank) ^ 0x5EED)
        set_lr(optimizer, lr_at(step, lr, warmup, steps if cosine else None))
        batch = next(iterator) if iterator is not None else None
        with accelerator.autocast():
            loss, step_logs = loss_fn(step, wrapped, batch, generator)
        accelerator.backward(loss)
        if grad_clip:
            accelerator.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for avg, live in pairs:
                torch._foreach_lerp_(avg, live, 1.0 - ema_decay)
        step_logs = {"loss": float(loss.detach()), **{k: float(v) for k, v in step_logs.items()}}
        run.history.append((step, step_logs["loss"]))
        for k, v in step_logs.items():
            running[k] = running.get(k, 0.0) + v
        bar.update()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            count = log_every if (step + 1) % log_every == 0 else (step + 1) % log_every
            logs = {k: v / count for k, v in running.items()}
            running = {}
            accelerator.log(logs, step=step + 1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k == "loss"})
        if (step + 1) % save_every == 0 or step + 1 == steps:
            accelerator.wait_for_everyone()
            run.save(step + 1, {**{k: accelerator.unwrap_model(m) for k, m in wrapped.items()}, **averaged}, optimizer)
    bar.close()
    accelerator.end_training()
    return logs
