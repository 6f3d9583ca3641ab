"""What ``s3cse sync`` sends and deletes: aws's comparison rules over two listings.
Pure (no S3, no files): the command lists both sides and carries the plan out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Direction = Literal["upload", "download", "copy"]


@dataclass(frozen=True)
class Entry:
    """One file or object, named relative to the synced folder or prefix."""

    name: str
    #: Plaintext size. For an object this comes from its listed (stored) size, assuming
    #: the V2/V3 format (AES-GCM, 16 bytes of tag) unless ``exact``.
    size: int
    #: Modification time, seconds since the epoch (an object's LastModified).
    modified: float
    #: False: ``size`` is an estimate from a listing; a HEAD of the object tells.
    exact: bool = True
    etag: str | None = None


@dataclass(frozen=True)
class Send:
    source: Entry
    dest: Entry | None  # None: not at the destination yet
    reason: Literal["new", "size", "time"]

    @property
    def estimated(self) -> bool:
        """Sent for a size difference that rests on a listing's estimate: an object whose
        real plaintext size (V1 CBC, unencrypted) a HEAD would tell."""
        return self.reason == "size" and not (
            self.source.exact and (self.dest is None or self.dest.exact)
        )


def differs(
    source: Entry,
    dest: Entry,
    direction: Direction,
    *,
    size_only: bool = False,
    exact_timestamps: bool = False,
) -> Literal["size", "time"] | None:
    """Why ``source`` must be sent again over ``dest``, or None when they are in sync.

    As ``aws s3 sync``: a different size always sends. Otherwise, uploads and copies
    send when the source is newer than the destination; downloads send when the local
    file is newer than the object (a downloaded file takes the object's time), or with
    ``exact_timestamps`` when the times differ at all. ``size_only`` ignores times.
    """
    if source.size != dest.size:
        return "size"
    if size_only:
        return None
    delta = dest.modified - source.modified
    if direction == "download":
        same = delta == 0 if exact_timestamps else delta <= 0
    else:
        same = delta >= 0
    return None if same else "time"


def plan(
    sources: Iterable[Entry],
    dests: Mapping[str, Entry],
    direction: Direction,
    *,
    size_only: bool = False,
    exact_timestamps: bool = False,
    delete: bool = False,
) -> tuple[list[Send], list[Entry]]:
    """(what to send, what to delete at the destination) to bring ``dests`` in line."""
    sends, seen = [], set()
    for source in sources:
        seen.add(source.name)
        dest = dests.get(source.name)
        if dest is None:
            sends.append(Send(source, None, "new"))
            continue
        reason = differs(
            source, dest, direction, size_only=size_only, exact_timestamps=exact_timestamps
        )
        if reason:
            sends.append(Send(source, dest, reason))
    deletes = [d for name, d in sorted(dests.items()) if name not in seen] if delete else []
    return sends, deletes
