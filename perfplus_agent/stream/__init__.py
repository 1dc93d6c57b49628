"""Perf+ stream rewriting: QEMU 7.2 migration channels parsed and filtered on the fly.

``StreamSession`` is one migration (its tag tables, statistics and multifd barrier);
``channel_for`` gives each of its connections the rewriter that fits what it carries.
"""

from __future__ import annotations

from perfplus_agent.stream.main_channel import MainChannel
from perfplus_agent.stream.multifd_channel import MultifdChannel
from perfplus_agent.stream.session import StreamAborted, StreamSession
from perfplus_agent.stream.stats import IterationStats, MigrationStats

__all__ = [
    "ChannelRewriter",
    "IterationStats",
    "MainChannel",
    "MigrationStats",
    "MultifdChannel",
    "StreamAborted",
    "StreamSession",
    "channel_for",
]

ChannelRewriter = MainChannel | MultifdChannel


def channel_for(session: StreamSession, index: int) -> ChannelRewriter:
    """The rewriter for the ``index``-th connection QEMU opened for a migration: QEMU 7.2's
    destination takes the first as the main channel and the others as multifd channels.
    Each rewriter checks the magic it expects and passes through what it does not know."""
    return MainChannel(session) if index == 0 else MultifdChannel(session, index - 1)
