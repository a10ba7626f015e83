"""Jobs and their queue: per-client FIFOs served round-robin, and the memory estimate that
refuses a job before anything is decoded."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import config
from .. import protocol as P


class Cancelled(Exception):
    """Raised inside a job when its client cancelled it or went away."""


def estimate_job_bytes(specs: list[P.BufferSpec]) -> int:
    """Rough upper bound of a job's memory: its input frames plus the pipeline's float working set."""
    image = next((s for s in specs if s.name == "image"), None)
    pixels = image.width * image.height if image is not None else 0
    return sum(s.nbytes for s in specs) + pixels * config.JOB_BYTES_PER_PIXEL


@dataclass
class Job:
    peer: bytes
    id: str
    op: str
    params: dict[str, Any]
    specs: list[P.BufferSpec]
    frames: list[Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)
    # Last progress sent to the client (I/O thread only): repeated by keep-alives.
    stage: str = "queued"
    fraction: float = 0.0
    last_sent: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[bytes, str]:
        return (self.peer, self.id)


class Scheduler:
    """Bounded per-client FIFO queues served round-robin (fair between clients)."""

    def __init__(self, max_queued: int):
        self.max_queued = max_queued
        self._queues: "collections.OrderedDict[bytes, collections.deque[Job]]" = collections.OrderedDict()
        self._count = 0
        self._cv = threading.Condition()
        self._closed = False
        self._last_peer: bytes | None = None

    def put(self, job: Job) -> bool:
        with self._cv:
            if self._count >= self.max_queued:
                return False
            self._queues.setdefault(job.peer, collections.deque()).append(job)
            self._count += 1
            self._cv.notify()
            return True

    def get(self, timeout: float | None = None) -> Job | None:
        with self._cv:
            if not self._cv.wait_for(lambda: self._count or self._closed, timeout):
                return None
            if self._closed and not self._count:
                return None
            # The client served last waits if anyone else has work: one that queued while
            # its job ran must not wait behind its next job.
            peer = next((p for p in self._queues if p != self._last_peer), None) or next(iter(self._queues))
            q = self._queues.pop(peer)
            job = q.popleft()
            self._count -= 1
            if q:  # back of the line
                self._queues[peer] = q
            self._last_peer = peer
            return job

    def remove(self, key: tuple[bytes, str]) -> Job | None:
        with self._cv:
            q = self._queues.get(key[0])
            if not q:
                return None
            for job in q:
                if job.id == key[1]:
                    q.remove(job)
                    self._count -= 1
                    if not q:
                        del self._queues[key[0]]
                    return job
            return None

    def drain_peer(self, peer: bytes) -> list[Job]:
        with self._cv:
            q = self._queues.pop(peer, collections.deque())
            self._count -= len(q)
            return list(q)

    def __len__(self) -> int:
        with self._cv:
            return self._count

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
