"""The main channel of a QEMU 7.2 migration, rewritten on the fly.

Python walks the stream's structure (header, configuration, commands, section headers and
footers); the RAM records inside the "ram" sections — the pages — are parsed, filtered and
re-emitted by the C :class:`RamRewriter` a whole buffer at a time. Everything after the
first FULL section (device state, EOF, the VM description) is passed through verbatim.

Anything not understood switches the migration to verbatim pass-through: at once when that
is safe (the destination's notion of "the last RAM block" agrees with the source's), or,
when dropped records made them differ, by failing the migration (the guest stays on the
source) — never by guessing.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

from perfplus_agent.perfplus_c import EOS, MALFORMED, NEED_MORE, UNSUPPORTED, RamRewriter
from perfplus_agent.stream.format import (
    COMMAND_NAMES,
    FILE_MAGIC,
    FILE_VERSION,
    HARMLESS_COMMANDS,
    RAM_IDSTR,
    RAM_INSTANCE,
    RAM_VERSION,
    Section,
)
from perfplus_agent.stream.session import StreamSession

__all__ = ["MainChannel"]

log = logging.getLogger(__name__)

_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")
# Configuration subsections this parser can step over, and the size of their fields.
_CAPABILITIES = b"configuration/capabilities"
_UUID = b"configuration/uuid"
_PAGE_BITS = b"configuration/target-page-bits"
_X86_PAGE_BITS = 12
# The rewriter's counters are read at every section end and at least this often (bytes of
# RAM records): reading them on every chunk showed in the proxy's profile.
ACCOUNT_EVERY = 8 << 20
INITIAL_BUFFER = 512 * 1024


class _NeedMore(Exception):
    """Not enough bytes buffered to parse the next element."""


class MainChannel:
    """Rewrites the main channel; ``feed`` yields the bytes to forward, in order."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session
        # Unparsed bytes are self._buf[self._pos:self._end]. The buffer keeps its size (it
        # grows, never shrinks): a buffer reallocated to a slightly different size for every
        # chunk fragmented the heap by tens of MiB per migration.
        self._buf = bytearray(INITIAL_BUFFER)
        self._pos = 0
        self._end = 0
        self._state = "header"
        self._ram_section: int | None = None  # section id of "ram"
        self._in_ram = False
        self._ignore_shared = False
        self._postcopy = False
        self._rewriter: RamRewriter | None = None
        self._eos = 0
        self._final = False
        self._expect_footer = False
        self._pending_barrier = 0
        self._base = 0  # stream offset of self._buf[0]
        self._seen_counters: dict[str, int] = {}
        self._unaccounted = 0  # RAM bytes consumed since the counters were last accounted

    # -- public ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> Iterator[bytes]:
        """Consume ``data``; yield output pieces. A piece ending a RAM section is yielded
        before the barrier wait that follows it, so the destination can always progress."""
        if self._state == "verbatim":
            if data:
                yield data
            return
        self._append(data)
        while True:
            if self._pending_barrier:
                self.session.main_wait(self._pending_barrier)
                self._pending_barrier = 0
            if not self.session.filtering and not self._diverged():
                self._state = "verbatim"  # another channel stood aside; nothing to track
            try:
                out = self._step()
            except _NeedMore:
                break
            if out:
                yield out
            if self._state == "verbatim":
                self._account()
                rest = self._drain()
                if rest:
                    yield rest
                return
        self._compact()

    def finish(self) -> bytes:
        """End of stream: whatever is left, unparsed, goes out verbatim (QEMU's own loader
        reports a truncated stream; the proxy does not invent an ending)."""
        self._account()
        return self._drain()

    # -- the buffer ------------------------------------------------------------------------
    def _append(self, data: bytes) -> None:
        n = len(data)
        if self._end + n > len(self._buf):
            self._compact()
            if self._end + n > len(self._buf):
                self._buf += bytes(max(self._end + n, 2 * len(self._buf)) - len(self._buf))
        self._buf[self._end:self._end + n] = data
        self._end += n

    def _compact(self) -> None:
        """Move the unparsed bytes to the front (usually part of one record)."""
        rest = self._end - self._pos
        if rest and self._pos:
            self._buf[:rest] = self._buf[self._pos:self._end]
        self._base += self._pos
        self._pos, self._end = 0, rest

    def _drain(self) -> bytes:
        """Everything unparsed, and an empty buffer (released: nothing is parsed after)."""
        rest = bytes(self._buf[self._pos:self._end])
        self._base += self._end
        self._buf = bytearray()
        self._pos = self._end = 0
        return rest

    # -- parsing helpers -------------------------------------------------------------------
    def _need(self, n: int) -> memoryview:
        if self._end - self._pos < n:
            raise _NeedMore
        return memoryview(self._buf)[self._pos:self._pos + n]

    def _take(self, n: int) -> bytes:
        chunk = bytes(self._need(n))
        self._pos += n
        return chunk

    def _step(self) -> bytes:
        if self._state == "header":
            return self._header()
        if self._state == "config":
            return self._configuration()
        if self._in_ram:
            return self._ram_records()
        return self._element()

    def _diverged(self) -> bool:
        return self._rewriter is not None and self._rewriter.diverged

    def _pass_through(self, reason: str) -> bytes:
        """Stand aside from here on: verbatim if safe, else fail the migration."""
        if self._diverged():
            raise self.session.abort(
                f"{reason}, and dropped records make the destination's last RAM block differ "
                "from the source's, so the rest cannot be passed through unchanged")
        self.session.stand_aside(reason)
        self._state = "verbatim"
        return b""

    # -- header and configuration ----------------------------------------------------------
    def _header(self) -> bytes:
        head = bytes(self._need(8))
        if head[:4] != FILE_MAGIC:
            return self._pass_through("the main channel does not start with QEVM "
                                      "(TLS, or not a QEMU migration stream)")
        version = _BE32.unpack_from(head, 4)[0]
        if version != FILE_VERSION:
            return self._pass_through(f"unknown migration stream version {version}")
        self._pos += 8
        self._state = "config"
        return head

    def _configuration(self) -> bytes:
        start = self._pos
        if self._need(1)[0] != Section.CONFIGURATION:
            self._state = "elements"  # no configuration section (old machine types)
            return b""
        try:
            self._pos += 1
            (length,) = _BE32.unpack(self._take(4))
            self._take(length)  # machine type
            while self._need(1)[0] == Section.SUBSECTION:
                self._pos += 1
                name = self._take(self._need(1)[0] + 1)[1:]
                self._take(4)  # version
                if not self._config_subsection(name):
                    self._pos = start
                    return self._pass_through(
                        f"unknown configuration subsection {name.decode(errors='replace')}")
        except _NeedMore:
            self._pos = start
            raise
        self._state = "elements"
        return bytes(self._buf[start:self._pos])

    def _config_subsection(self, name: bytes) -> bool:
        if name == _CAPABILITIES:
            (count,) = _BE32.unpack(self._take(4))
            for _ in range(count):
                cap = self._take(self._need(1)[0] + 1)[1:]
                if cap == b"x-ignore-shared":
                    self._ignore_shared = True
            return True
        if name == _UUID:
            self._take(16)
            return True
        if name == _PAGE_BITS:
            (bits,) = _BE32.unpack(self._take(4))
            return bits == _X86_PAGE_BITS
        return False

    # -- top-level elements ----------------------------------------------------------------
    def _element(self) -> bytes:
        kind = self._need(1)[0]
        if kind == Section.COMMAND:
            return self._command()
        if kind == Section.START:
            return self._start_section()
        if kind in (Section.PART, Section.END):
            head = bytes(self._need(5))
            (section,) = _BE32.unpack_from(head, 1)
            if section != self._ram_section:
                return self._pass_through(f"an iterable section {section} that is not RAM")
            self._pos += 5
            self._open_ram(final=kind == Section.END)
            return head
        if kind == Section.FOOTER:
            return self._pass_through("a section footer outside a section")
        if kind == Section.FULL:
            # Device state: not length-prefixed, and all RAM has been sent (precopy).
            self._state = "verbatim"
            log.debug("first FULL section: the rest of the main channel passes verbatim")
            return b""
        return self._pass_through(f"unexpected element type {kind:#04x}")

    def _command(self) -> bytes:
        head = bytes(self._need(5))
        cmd, length = _BE16.unpack_from(head, 1)[0], _BE16.unpack_from(head, 3)[0]
        if cmd not in HARMLESS_COMMANDS:
            name = COMMAND_NAMES.get(cmd, f"#{cmd}")
            return self._pass_through(f"migration command {name} (postcopy, COLO or "
                                      "another mode Perf+ does not filter)")
        return self._take(5 + length)

    def _start_section(self) -> bytes:
        fixed = self._need(6)
        idlen = fixed[5]
        head = bytes(self._need(6 + idlen + 8))
        (section,) = _BE32.unpack_from(head, 1)
        idstr = head[6:6 + idlen]
        instance, version = struct.unpack_from(">II", head, 6 + idlen)
        if idstr != RAM_IDSTR:
            return self._pass_through(
                f"iterable section {idstr.decode(errors='replace')!r}, which Perf+ cannot parse")
        if (instance, version) != (RAM_INSTANCE, RAM_VERSION) or self._ram_section is not None:
            return self._pass_through(f"RAM section instance {instance} version {version}")
        self._ram_section = section
        self._rewriter = RamRewriter(self.session.filter, postcopy_page_size=self._postcopy,
                                     ignore_shared=self._ignore_shared)
        self._pos += len(head)
        self._open_ram(final=False)
        return head

    # -- RAM records -----------------------------------------------------------------------
    def _open_ram(self, final: bool) -> None:
        self._in_ram = True
        self._final = final

    def _ram_records(self) -> bytes:
        assert self._rewriter is not None
        if self._expect_footer:
            return self._footer()
        view = memoryview(self._buf)[self._pos:self._end]
        try:
            out, consumed, status = self._rewriter.feed(view)
        finally:
            view.release()
        self._pos += consumed
        self._unaccounted += consumed
        if status != NEED_MORE or self._unaccounted >= ACCOUNT_EVERY:
            self._account()
        if status == NEED_MORE:
            if out:
                return out
            raise _NeedMore
        if status == EOS:
            self._eos += 1
            self.session.main_passed_eos()
            self.session.stats.close_iteration(self._eos - 1, final=self._final)
            self._pending_barrier = self._eos
            self._expect_footer = True
            return out
        what = "an unsupported" if status == UNSUPPORTED else "a malformed"
        reason = f"{what} RAM record at stream offset {self._offset()}"
        if status == MALFORMED:
            raise self.session.abort(reason)
        return out + self._pass_through(reason)

    def _footer(self) -> bytes:
        if self._need(1)[0] != Section.FOOTER:  # streams without footers (old machines)
            self._expect_footer = False
            self._in_ram = False
            return b""
        foot = bytes(self._need(5))
        if _BE32.unpack_from(foot, 1)[0] != self._ram_section:
            raise self.session.abort("RAM section footer does not match its section")
        self._pos += 5
        self._expect_footer = False
        self._in_ram = False
        return foot

    def _account(self) -> None:
        """Move the rewriter's counters since the last call into the migration's figures."""
        if self._rewriter is None:
            return
        self._unaccounted = 0
        now = self._rewriter.counters
        delta = {k: now[k] - self._seen_counters.get(k, 0) for k in now}
        self._seen_counters = now
        if not any(delta.values()):
            return
        self.session.stats.add(
            self._eos,
            pages_seen=delta["pages_seen"], pages_forwarded=delta["pages_forwarded"],
            pages_dropped=delta["pages_dropped"], pages_unchanged=delta["pages_unchanged"],
            zero_pages=delta["zero_pages"],
            other_pages=delta["xbzrle_pages"] + delta["compressed_pages"],
            bytes_in=delta["bytes_in"], bytes_out=delta["bytes_out"])

    def _offset(self) -> int:
        return self._base + self._pos
