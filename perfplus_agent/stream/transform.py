"""The Perf+ filter as the daemon relay's per-channel transform (daemon/transform.py).

One :class:`StreamSession` per migration; the relay asks for one transform per connection,
in QEMU's connection order. ``feed`` returns an iterator so that the relay sends each piece
as soon as it exists — in particular the end of a RAM section before the barrier wait that
follows it, which the destination needs to make progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from perfplus_agent.stream import StreamSession, channel_for

__all__ = ["FilterTransform", "filter_factory"]


class FilterTransform:
    """One channel of a filtered migration."""

    def __init__(self, session: StreamSession, index: int) -> None:
        self.session = session
        self.channel = channel_for(session, index)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        return self.channel.feed(chunk)

    def finish(self) -> bytes:
        return self.channel.finish()

    def abort(self) -> None:
        """The relay is tearing the migration down: release any barrier wait."""
        self.session.close("the migration's connections are closing")


def filter_factory(session: StreamSession) -> Callable[[bytes, int], FilterTransform]:
    """The relay's ``make_transform`` for one migration's session."""
    def make(first_bytes: bytes, channel_index: int) -> FilterTransform:
        del first_bytes  # each channel rewriter checks its own magic
        return FilterTransform(session, channel_index)
    return make
