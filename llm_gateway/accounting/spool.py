"""The ledger's spool: usage records on local disk until the database has them.

A record is appended to the current segment file (one JSON line, a plain `write`) before
`Ledger.record` returns. No fsync: once `write` returns the kernel has the bytes, so a killed
process (SIGKILL, OOM) loses nothing; only a machine crash could, and fsync per request would
cost far more than the request. The writer seals the current segment, inserts it and deletes
it; while the database is down sealed segments simply wait on disk.

Several processes may share the directory (uvicorn workers, replicas on one volume). Each
owns the segments named after its `owner` token and holds an exclusive `flock` on
`<owner>.lock` for as long as it lives. The kernel drops the lock when the process dies, so
a segment whose owner's lock can be taken belongs to a dead process: whoever takes the lock
replays and deletes it (inserts are idempotent, so replaying twice would still be harmless).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

SEGMENT = ".jsonl"
LOCK = ".lock"
# A segment is sealed at each flush, or when it grows this big while the database is away:
# what the writer reads into memory at once stays bounded.
MAX_SEGMENT_BYTES = 4 << 20


@dataclass
class Segment:
    path: Path
    records: int  # lines in it (known for our own; counted when read for a dead owner's)


@dataclass
class Orphan:
    """A dead owner's leftover segments, locked by us while we replay them."""

    owner: str
    lock_fd: int
    segments: list[Path] = field(default_factory=list)


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _owner_of(name: str) -> str | None:
    if name.startswith("."):
        return None  # a lock being created (see `open`)
    if name.endswith(LOCK):
        return name[: -len(LOCK)]
    if name.endswith(SEGMENT):
        return name.split(".", 1)[0]
    return None


class Spool:
    def __init__(self, directory: Path, max_segment_bytes: int = MAX_SEGMENT_BYTES) -> None:
        self.dir = directory
        self.max_segment_bytes = max_segment_bytes
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.sealed: deque[Segment] = deque()  # ours, oldest first, waiting for the database
        self.unsealed = 0  # records in the current segment
        self._bytes = 0
        self._seq = 0
        self._fd = -1
        self._lock_fd = -1
        self._path = self.dir
        # append() may run on the event loop while the writer seals from the same loop; the
        # lock also keeps a call from another thread (a sync shutdown hook) safe.
        self._mutex = threading.Lock()

    # --- our own segments --------------------------------------------------------------

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Locked under a hidden name, then renamed: nobody can see `<owner>.lock` unlocked
        # and take it for a dead owner's.
        hidden = self.dir / f".{self.owner}{LOCK}"
        fd = os.open(hidden, os.O_CREAT | os.O_RDWR, 0o600)
        if not _lock(fd):  # cannot happen: the name is new
            os.close(fd)
            raise RuntimeError(f"cannot lock {hidden}")
        os.rename(hidden, self.dir / f"{self.owner}{LOCK}")
        self._lock_fd = fd
        self._new_segment()

    def _new_segment(self) -> None:
        self._seq += 1
        self._path = self.dir / f"{self.owner}.{self._seq:08d}{SEGMENT}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.unsealed = 0
        self._bytes = 0

    def append(self, line: bytes) -> None:
        """Write one record line (ending in a newline); raises OSError (disk full...)."""
        with self._mutex:
            if self._fd < 0:
                raise OSError("the ledger spool is closed")
            view = memoryview(line)
            while view:  # a regular file takes it whole; a short write is only possible
                view = view[os.write(self._fd, view):]
            self.unsealed += 1
            self._bytes += len(line)
            if self._bytes >= self.max_segment_bytes:
                self._seal()

    def seal(self) -> None:
        """Hand the current segment to the writer (when it holds anything)."""
        with self._mutex:
            if self.unsealed and self._fd >= 0:
                self._seal()

    def _seal(self) -> None:
        os.close(self._fd)
        self.sealed.append(Segment(self._path, self.unsealed))
        self._new_segment()

    @property
    def pending(self) -> int:
        """Our records not yet in the database."""
        return self.unsealed + sum(s.records for s in self.sealed)

    def written(self, segment: Segment) -> None:
        """The database has this segment's records: forget it."""
        segment.path.unlink(missing_ok=True)
        if self.sealed and self.sealed[0] is segment:
            self.sealed.popleft()

    def close(self) -> None:
        """Stop appending. Sealed segments still waiting stay on disk for the next start (or
        another process) to replay."""
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                if self.unsealed:
                    self.sealed.append(Segment(self._path, self.unsealed))
                else:
                    self._path.unlink(missing_ok=True)
        if self._lock_fd >= 0:
            if not self.sealed:
                (self.dir / f"{self.owner}{LOCK}").unlink(missing_ok=True)
            os.close(self._lock_fd)  # releases the flock: what is left is anyone's to replay
            self._lock_fd = -1

    # --- dead owners' segments ---------------------------------------------------------

    def claim_orphans(self) -> list[Orphan]:
        """Lock and return every dead owner's leftovers (ours and live owners' excluded)."""
        owners = {_owner_of(p.name) for p in self.dir.iterdir()} - {None, self.owner}
        claimed = []
        for owner in sorted(o for o in owners if o is not None):
            try:
                fd = os.open(self.dir / f"{owner}{LOCK}", os.O_CREAT | os.O_RDWR, 0o600)
            except OSError:
                continue
            if not _lock(fd):
                os.close(fd)  # alive
                continue
            segments = sorted(self.dir.glob(f"{owner}.*{SEGMENT}"))
            claimed.append(Orphan(owner, fd, segments))
        return claimed

    def release(self, orphan: Orphan) -> None:
        """Every segment of the orphan is written (and deleted): drop its lock file."""
        (self.dir / f"{orphan.owner}{LOCK}").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(orphan.lock_fd)


def read_lines(path: Path) -> list[bytes]:
    """A segment's record lines. Blocking: call it in a thread."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.split(b"\n") if line.strip()]
