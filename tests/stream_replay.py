"""Replaying recorded or crafted migration streams through the Perf+ rewriter, one thread
per channel as the relay runs it."""

from __future__ import annotations

import random
import threading

from perfplus_agent.stream import StreamSession, channel_for


def rewrite(session: StreamSession, streams: list[bytes], seed: int = 0,
            chunks: tuple[int, ...] = (1, 13, 4096, 65536, 300_000)) -> list[bytes]:
    """Feed every channel from its own thread in random chunk sizes, like the proxy does."""
    outputs: list[bytearray] = [bytearray() for _ in streams]
    errors: list[BaseException] = []

    def pump(i: int) -> None:
        rnd = random.Random(seed * 100 + i)
        channel = channel_for(session, i)
        data, pos = streams[i], 0
        try:
            while pos < len(data):
                n = rnd.choice(chunks)
                for piece in channel.feed(data[pos:pos + n]):
                    outputs[i] += piece
                pos += n
            outputs[i] += channel.finish()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
            session.abort(str(exc))

    threads = [threading.Thread(target=pump, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a channel hung"
    if errors:
        raise errors[0]
    return [bytes(o) for o in outputs]
