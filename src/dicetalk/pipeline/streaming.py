"""Frames out as soon as they are final: chunked decoding and segmented (streaming) sampling.

**Decoding** (:class:`ChunkDecoder`). The temporal VAE decodes ``decode_chunk`` frames at a time,
chunks aligned at frame 0 (the recipe's rule); a chunk can be decoded as soon as its latents are
final. After whole-video sampling that is on the last step, as each window's estimate comes in
(``PerformanceOptions.overlap_decode``); in streaming mode, at the end of each segment. On CUDA the
decoder (VAE, refiner, frame interpolation, conversion) runs on a side stream, copies its frames
into pinned host memory and hands them over later, so denoising never waits for it.

**Streaming** (:class:`StreamOptions`). With whole-video window sampling no frame is final before
the last step. Streaming samples the video in *segments* of new frames ``[a, b)`` (boundaries on
decode chunks; the first small, the next ``growth`` times larger), each fully denoised, decoded and
handed over before the next. A segment is denoised together with

* ``context`` frames before it, *held* to the trajectory they had in the previous segment (their
  noisy latents at every step, recorded there): the new frames are denoised beside frames that
  are already written, as in one whole-video run, so there is no seam;
* ``lookahead`` frames after it, denoised and dropped (the next segment makes them again), so the
  segment's last frames see what comes next;
* the recipe's windows: at each step the whole video's window grid, each window that crosses the
  segment's ends moved inside it (as ``blend`` windows at a video's ends), windows over held frames
  alone skipped.

Every frame starts from the initial noise the whole-video run gives it, and a stochastic sampler's
per-step noise is the whole-video run's too (with a CPU generator: each segment restores the
generator to that step's state and draws the noise of the frames up to its end, a prefix of the
whole video's draw). What differs from the whole-video result is only what the segment ends do:
windows moved inside at the right end, the previous segment's own right end in the held context
and, for ``circular`` windows, no wrap-around at the video's start (:func:`segment_windows`).
The cost is the context and lookahead frames denoised again: about ``(context + lookahead) /
segment`` more UNet work, which the growing segments amortise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import InputError


@dataclass(frozen=True)
class StreamOptions:
    """How a streamed video is cut into segments (frames are generated frames, before interpolation)."""

    first: int | None = None  # new frames in the first segment (None: one window), rounded up to whole decode chunks
    growth: float = 2.0  # each segment this many times the one before ...
    largest: int | None = None  # ... up to this many frames (None: 8 windows)
    context: int | None = None  # frames before a segment held to their earlier trajectory (None: window - 1)
    lookahead: int | None = None  # frames after a segment denoised with it and dropped (None: window - 1)

    def validated(self) -> "StreamOptions":
        if (self.first is not None and self.first < 1) or self.growth < 1.0 or (self.largest is not None and self.largest < 1):
            raise InputError("stream: first and largest must be at least 1 frame, growth at least 1")
        if (self.context is not None and self.context < 0) or (self.lookahead is not None and self.lookahead < 0):
            raise InputError("stream: context and lookahead must be 0 or more frames")
        return self


@dataclass
class Segment:
    start: int  # first new frame
    end: int  # one past the last new frame (the last segment: the end of the latents, padding included)
    lo: int  # first frame denoised (context included)
    hi: int  # one past the last frame denoised (lookahead included)


def plan_segments(frames: int, total: int, window: int, chunk: int, options: StreamOptions) -> list[Segment]:
    """Segments over ``frames`` generated frames (``total`` latents with the padding), boundaries on
    multiples of ``chunk``; the last one runs to ``total``."""
    context = window - 1 if options.context is None else options.context
    lookahead = window - 1 if options.lookahead is None else options.lookahead
    size = float(max(options.first or window, 1))
    largest = options.largest or 8 * window
    bounds = [0]
    while True:
        step = -(-int(round(size)) // chunk) * chunk
        nxt = bounds[-1] + max(chunk, step)
        if nxt >= frames or frames - nxt < window:  # a last segment of less than a window: not worth its context
            break
        bounds.append(nxt)
        size = min(size * options.growth, largest)
    bounds.append(total)
    segments: list[Segment] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        floor = segments[-1].lo if segments else 0  # held frames must have been denoised by the segment before
        lo, hi = max(floor, a - context), min(total, b + lookahead)
        if hi - lo < window:  # a window must fit: more context first, then more lookahead
            lo = max(floor, hi - window)
            hi = min(total, lo + window)
        segments.append(Segment(a, b, lo, hi))
    return segments


def segment_windows(starts: list[int], width: int, segment: Segment, total: int) -> list[int]:
    """The whole video's windows of one step (``starts``, ``width`` frames each, over ``total``
    frames) for ``segment``: windows crossing its ends moved inside ``[lo, hi)``, windows over held
    context alone dropped. A circular window that wraps (a negative start) counts at both of its ends."""
    width = min(width, segment.hi - segment.lo)
    out: list[int] = []
    for s in list(starts) + [s + total for s in starts if s < 0]:
        if s + width <= segment.lo or s >= segment.hi:
            continue
        s = min(max(s, segment.lo), segment.hi - width)
        if s + width > segment.start and s not in out:
            out.append(s)
    return sorted(out)


class GeneratorSteps:
    """Per-evaluation states of a CPU generator in the whole-video order, so that each segment's
    stochastic sampler draws the whole video's noise for its frames (a prefix of that draw)."""

    def __init__(self, generator: torch.Generator | None, full_shape: tuple[int, ...]):
        self.generator = generator
        self.full_shape = full_shape
        self.exact = generator is not None and generator.device.type == "cpu"
        self.states = [generator.get_state()] if self.exact else []

    def before(self, evaluation: int) -> None:
        if self.exact and evaluation < len(self.states):
            self.generator.set_state(self.states[evaluation])

    def after(self, evaluation: int, dtype: torch.dtype) -> None:
        """Record the state after ``evaluation`` as the whole-video run leaves it (first segment only)."""
        if not self.exact or evaluation + 1 < len(self.states):
            return
        g, before = self.generator, self.states[evaluation]
        if torch.equal(g.get_state(), before):
            self.states.append(before)  # the sampler drew nothing at this evaluation
            return
        g.set_state(before)
        torch.randn(self.full_shape, generator=g, dtype=dtype)  # the whole video's draw, discarded
        self.states.append(g.get_state())

    def finish(self) -> None:
        if self.exact:
            self.generator.set_state(self.states[-1])


class ChunkDecoder:
    """Decodes latent rows to frames chunk by chunk, in order, as they become final.

    ``decode(z) -> pixels`` runs the VAE (and refiner) on ``k * chunk`` latents; ``finish(pixels)``
    turns float pixels into what the caller keeps (a device tensor) and ``deliver(host)`` takes it on
    the host. ``keep``: frames handed over (later rows only give the temporal decoder context).
    ``overlap``: on CUDA, run on a side stream and hand over without blocking the denoising.
    """

    def __init__(
        self,
        decode: Callable[[torch.Tensor], torch.Tensor],
        chunk: int,
        total: int,
        keep: int,
        batch: int,
        finish: Callable[[torch.Tensor], torch.Tensor],
        deliver: Callable[[torch.Tensor], None],
        device: torch.device,
        overlap: bool = False,
        to_host: bool = True,
    ):
        self._decode, self.chunk, self.batch = decode, chunk, max(1, batch)
        self._finish, self._deliver = finish, deliver
        self.end = min(total, -(-keep // chunk) * chunk)  # rows decoded: whole chunks up to the last kept frame
        self.keep = keep
        self.done = 0  # rows decoded (or queued) so far
        self.stream = torch.cuda.Stream(device) if overlap and device.type == "cuda" else None
        self.pending: list[tuple[torch.cuda.Event, torch.Tensor]] = []
        self.to_host = to_host

    def ready(self, upto: int, latents: torch.Tensor) -> None:
        """Rows ``[0, upto)`` of ``latents`` (global row numbers) are final: decode the chunks they complete."""
        upto = min(upto, self.end)
        starts = list(range(self.done, upto, self.chunk))
        starts = [s for s in starts if min(s + self.chunk, self.end) <= upto]
        if not starts:
            return
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(latents.device))
            latents.record_stream(self.stream)
            with torch.cuda.stream(self.stream):
                self._run(starts, latents)
        else:
            self._run(starts, latents)
        self.done = min(starts[-1] + self.chunk, self.end)

    def _run(self, starts: list[int], latents: torch.Tensor) -> None:
        full = [s for s in starts if s + self.chunk <= self.end]
        groups = [full[i : i + self.batch] for i in range(0, len(full), self.batch)] + [[s] for s in starts if s not in full]
        for group in groups:
            s, e = group[0], min(group[-1] + self.chunk, self.end)
            pixels = self._decode(latents[s:e]).float()
            for c in group:
                part = pixels[c - s : min(c + self.chunk, self.end) - s][: max(0, self.keep - c)]
                self._hand_over(self._finish(part))

    def _hand_over(self, frames: torch.Tensor) -> None:
        if self.stream is None:
            self._deliver(frames.cpu() if self.to_host else frames)
            return
        host = torch.empty(frames.shape, dtype=frames.dtype, pin_memory=True)
        host.copy_(frames, non_blocking=True)
        event = torch.cuda.Event()
        event.record(self.stream)
        self.pending.append((event, host))

    def poll(self, wait: bool = False) -> None:
        """Hand over, in order, every queued chunk whose frames have arrived (``wait``: all of them)."""
        while self.pending and (wait or self.pending[0][0].query()):
            event, host = self.pending.pop(0)
            event.synchronize()
            self._deliver(host)

    def close(self, latents: torch.Tensor) -> None:
        """Decode whatever is left of ``latents`` and hand everything over."""
        self.ready(self.end, latents)
        self.poll(wait=True)
