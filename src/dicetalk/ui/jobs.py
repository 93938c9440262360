"""Bookkeeping of the web UI's jobs: how long they take, which one runs, and what waits in gradio's queue.

:class:`DurationModel` predicts a job's duration from the recent jobs' measured seconds per
(second of speech x denoising step). :class:`JobBoard` holds the running job's cancel switch and
the server's "closing" state. :class:`QueueView` is the one place that reads gradio's queue
internals (gradio 6.x ``Blocks._queue``): the jobs waiting and running, per session, and the
estimates sent to waiting clients.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("dicetalk.ui")


class DurationModel:
    """Seconds a job takes, from the last ``window`` finished jobs.

    A job's work is ``audio seconds x steps``; its duration is fitted as ``a + b * work`` by
    least squares over the recent jobs (``a``: reading, encoding and writing; ``b``: denoising),
    or as ``b * work`` while the jobs seen are too alike to tell the two apart.
    """

    def __init__(self, window: int = 10):
        self._jobs: deque[tuple[float, float]] = deque(maxlen=window)  # (work, seconds)
        self._lock = threading.Lock()

    def record(self, audio_seconds: float, steps: int, seconds: float) -> None:
        work = max(audio_seconds, 1e-3) * max(steps, 1)
        with self._lock:
            self._jobs.append((work, max(seconds, 0.0)))

    def _fit(self) -> tuple[float, float] | None:
        with self._lock:
            jobs = list(self._jobs)
        if not jobs:
            return None
        n = len(jobs)
        mw = sum(w for w, _ in jobs) / n
        ms = sum(s for _, s in jobs) / n
        var = sum((w - mw) ** 2 for w, _ in jobs)
        if n >= 2 and var > 1e-9 * max(mw * mw, 1e-9) * n:
            b = sum((w - mw) * (s - ms) for w, s in jobs) / var
            a = ms - b * mw
            if b > 0 and a >= 0:
                return a, b
        return 0.0, ms / mw

    def predict(self, audio_seconds: float | None, steps: int) -> float | None:
        """Expected seconds of a job; None before the first job has finished.

        Unknown speech length: the recent jobs' mean duration.
        """
        fit = self._fit()
        if fit is None:
            return None
        if audio_seconds is None:
            with self._lock:
                return sum(s for _, s in self._jobs) / max(1, len(self._jobs))
        a, b = fit
        return a + b * max(audio_seconds, 1e-3) * max(steps, 1)


# From this share of its progress on, a job's own pace predicts its end better than the recent jobs
# do (on a shared machine the pace changes with the load).
OWN_PACE_FROM = 0.15


@dataclass
class RunningJob:
    session: str | None
    audio_seconds: float
    steps: int
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    predicted: float | None = None  # seconds, from the recent jobs
    fraction: float = 0.0  # its progress, as reported by generate

    def projected(self, now: float | None = None) -> float | None:
        """Expected total seconds: from its own pace once well under way, else the prediction."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        if self.fraction >= OWN_PACE_FROM and elapsed > 0:
            return elapsed / self.fraction
        return self.predicted

    def left(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        total = self.projected(now)
        return None if total is None else max(0.0, total - (now - self.started))


class JobBoard:
    """The running job (its cancel switch, its expected end) and the server's closing state."""

    def __init__(self, model: DurationModel | None = None):
        self.model = model or DurationModel()
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._running: list[RunningJob] = []
        self._idle = threading.Condition(self._lock)
        self.audio_seconds: OrderedDict[str, float] = OrderedDict()  # upload path -> speech length (LRU)

    def remember_audio(self, path: str, seconds: float) -> None:
        with self._lock:
            self.audio_seconds[path] = seconds
            self.audio_seconds.move_to_end(path)
            while len(self.audio_seconds) > 1024:
                self.audio_seconds.popitem(last=False)

    def audio_length(self, path: str | None) -> float | None:
        with self._lock:
            return self.audio_seconds.get(path) if path else None

    def start(self, session: str | None, audio_seconds: float, steps: int) -> RunningJob:
        job = RunningJob(session, audio_seconds, steps, predicted=self.model.predict(audio_seconds, steps))
        with self._lock:
            self._running.append(job)
        return job

    def finish(self, job: RunningJob, succeeded: bool) -> None:
        if succeeded:
            self.model.record(job.audio_seconds, job.steps, time.monotonic() - job.started)
        with self._lock:
            self._running.remove(job)
            self._idle.notify_all()

    def running(self) -> list[RunningJob]:
        with self._lock:
            return list(self._running)

    def cancel_all(self) -> int:
        """Ask every running job to stop at its next window; returns how many were asked."""
        with self._lock:
            for job in self._running:
                job.cancel.set()
            return len(self._running)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    def remaining_seconds(self) -> float | None:
        """Expected seconds until the running job(s) finish (0 when none runs; None when unknown)."""
        now = time.monotonic()
        total = 0.0
        for job in self.running():
            left = job.left(now)
            if left is None:
                return None
            total += left
        return total

    def pace(self) -> float:
        """How much slower (> 1) or faster than predicted the running job goes, from its own
        progress; 1 when unknown. Scales the estimates of the jobs waiting behind it."""
        now = time.monotonic()
        for job in self.running():
            projected = job.projected(now)
            if job.fraction >= OWN_PACE_FROM and job.predicted and projected:
                return min(5.0, max(0.2, projected / job.predicted))
        return 1.0


class QueueView:
    """Reads (and, at shutdown, releases) the waiting jobs of one event in gradio's queue.

    Everything that depends on gradio's private queue structure lives here, so that an
    upgrade of gradio breaks this class (and its tests), not the rest of the UI.
    ``fn``: the job function given to the event listener; ``describe(data)`` turns an event's
    raw input list into ``(audio_path, steps)``.
    """

    def __init__(self, blocks, fn: Callable, board: JobBoard, describe: Callable[[list], tuple[str | None, int]]):
        self.blocks, self.fn, self.board, self.describe = blocks, fn, board, describe

    @property
    def _queue(self):
        return self.blocks._queue

    def _ours(self, event) -> bool:
        return getattr(getattr(event, "fn", None), "fn", None) is self.fn  # the event's BlockFunction wraps our function

    def waiting(self) -> list[Any]:
        """Our events waiting for a worker, in queue order."""
        events = []
        for event_queue in list(self._queue.event_queue_per_concurrency_id.values()):
            events += [e for e in list(event_queue.queue) if self._ours(e)]
        return events

    def active(self) -> list[Any]:
        return [e for job in list(self._queue.active_jobs) if job for e in job if self._ours(e)]

    def jobs_of_session(self, session: str | None) -> int:
        """How many of this session's jobs wait or run."""
        if session is None:
            return 0
        return sum(1 for e in self.waiting() + self.active() if e.session_hash == session)

    def idle(self) -> bool:
        return not self.waiting() and not self.active()

    def undelivered(self) -> int:
        """Messages queued for clients and not yet sent to them."""
        return sum(q.qsize() for q in list(self._queue.pending_messages_per_session.values()))

    def _predicted(self, event) -> float | None:
        data = getattr(getattr(event, "data", None), "data", None) or []
        try:
            audio_path, steps = self.describe(list(data))
        except Exception:  # a malformed request: no estimate for it
            return self.board.model.predict(None, 1)
        return self.board.model.predict(self.board.audio_length(audio_path), steps)

    def estimates(self) -> list[tuple[Any, int, float | None, float | None]]:
        """``(event, rank, wait, eta)`` of every waiting job: the seconds until it starts and
        until its result is ready (None while no job has finished yet)."""
        ahead = self.board.remaining_seconds()
        pace = self.board.pace()
        out = []
        for rank, event in enumerate(self.waiting()):
            own = self._predicted(event)
            own = None if own is None else own * pace
            eta = None if ahead is None or own is None else ahead + own
            out.append((event, rank, ahead, eta))
            ahead = None if ahead is None or own is None else ahead + own
        return out

    def install_estimates(self) -> None:
        """Replace gradio's estimate (its mean job duration, blind to the length of each job) by ours.

        The estimate sent is the wait in the queue: the seconds until the job starts (gradio's own
        is the time until the result). The page shows it as "queue: position/size | waited/wait s";
        gradio_client's ``Job.status()`` carries it as ``rank``, ``queue_size`` and ``eta``. The app
        queues no other event, so ours are the only ones estimated.
        """
        from gradio.server_messages import EstimationMessage

        queue = self._queue
        original = queue.broadcast_estimations

        def broadcast_estimations(concurrency_id: str, after: int | None = None) -> None:
            try:
                ours = self.estimates()
            except Exception:  # never let an estimate break the queue
                log.exception("queue estimate failed")
                return original(concurrency_id, after)
            for event, rank, wait, _eta in ours:
                if after is None or rank >= after:
                    queue.send_message(event, EstimationMessage(rank=rank, rank_eta=wait, queue_size=len(ours)))

        queue.broadcast_estimations = broadcast_estimations

    def release_waiting(self) -> None:
        """Let every waiting job start at once (each is told that the server is closing)."""
        for event_queue in list(self._queue.event_queue_per_concurrency_id.values()):
            if any(self._ours(e) for e in list(event_queue.queue)):
                event_queue.concurrency_limit = None
