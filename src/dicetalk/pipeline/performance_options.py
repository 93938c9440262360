"""The speed switches themselves (:class:`PerformanceOptions`), without torch: ``--performance`` is
checked before any model is imported. What each switch does: :mod:`dicetalk.pipeline.performance`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

ATTENTION_BACKENDS = ("default", "flash", "efficient", "cudnn", "math")


@dataclass(frozen=True)
class PerformanceOptions:
    attention: str = "default"
    fuse_qkv: bool = False
    channels_last: bool = False
    compile_blocks: bool = False
    compile_vae: bool = False
    compile_backend: str = "inductor"  # tests use "aot_eager": dynamo's tracing without code generation
    cuda_graphs: bool = False
    windows_per_batch: int = 1
    decode_batch: int = 1
    overlap_decode: bool = False

    def validated(self) -> "PerformanceOptions":
        if self.attention not in ATTENTION_BACKENDS:
            raise InputError(f"attention must be one of {', '.join(ATTENTION_BACKENDS)}, got {self.attention!r}")
        if self.windows_per_batch < 1 or self.decode_batch < 1:
            raise InputError("windows_per_batch and decode_batch must be at least 1")
        return self

    def replace(self, **changes: Any) -> "PerformanceOptions":
        return dataclasses.replace(self, **changes).validated()

    @classmethod
    def parse(cls, spec: str | None) -> "PerformanceOptions":
        """``[fast|none|defaults][,field[=value]...]``: a bare field name switches it on (``parse(o.describe()) == o``)."""
        options = cls()
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        for i, item in enumerate(p.strip() for p in (spec or "").split(",")):
            if not item:
                continue
            if i == 0 and item in ("fast", "none", "defaults"):  # "defaults": what describe() writes for cls()
                options = FAST if item == "fast" else cls()
                continue
            key, _, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in fields:
                raise InputError(f"performance {spec!r}: unknown field {key!r}; fields: {', '.join(fields)}")
            kind = str(fields[key])
            value = value.strip() or "true"
            try:
                if kind == "bool":
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                        raise ValueError
                    parsed: Any = value.lower() in ("true", "1", "yes", "on")
                elif kind == "int":
                    parsed = int(value)
                else:
                    parsed = value
            except ValueError:
                raise InputError(f"performance {spec!r}: {key}={value!r} is not a valid {kind}") from None
            options = dataclasses.replace(options, **{key: parsed})
        return options.validated()

    def describe(self) -> str:
        on = [f.name if f.type == "bool" else f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self) if getattr(self, f.name) != f.default]
        return ", ".join(on) or "defaults"


FAST = PerformanceOptions(attention="flash", fuse_qkv=True, compile_blocks=True, cuda_graphs=True, decode_batch=2, overlap_decode=True)
"""Every switch at once (its choice of values is what the H200 benchmark measured best; see benchmarks/gpu_check.sh)."""
