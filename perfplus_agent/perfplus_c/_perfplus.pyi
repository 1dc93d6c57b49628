"""Type hints of the Perf+ C core (perfplus_agent/perfplus_c/*.c, *.cc)."""

Buffer = bytes | bytearray | memoryview

PAGE_SIZE: int
TAG_SIZE: int
ABI: int
ALGORITHMS: tuple[str, ...]
DEFAULT_ALGORITHM: str
HIGHWAYHASH_TARGET: str
NEED_MORE: int
EOS: int
UNSUPPORTED: int
MALFORMED: int

class UnsupportedStream(ValueError):
    """A migration stream this filter cannot handle safely."""

def key_size(algorithm: str) -> int:
    """Key bytes of an algorithm: 32 (highwayhash), 16 (siphash), 0 (md5)."""

def new_key(algorithm: str) -> bytes:
    """A fresh random key of the algorithm's size (getrandom)."""

def hash_pages(algorithm: str, key: Buffer, pages: Buffer) -> bytes:
    """16 raw hash bytes per 4096-byte page (no valid bit); the GIL is released."""

def copy_pages(dst: Buffer, src: Buffer) -> None:
    """memcpy(dst, src) of equal lengths without the GIL: the benchmark's reference."""

def _hash_bytes(algorithm: str, key: Buffer, data: Buffer) -> bytes:
    """16 raw hash bytes of data of any length (tests)."""

def _highwayhash(key: Buffer, data: Buffer, target: str, bits: int) -> bytes | int:
    """One shim's HighwayHash (bits 128 → bytes, 64 → int) or the library's HighwayHash64
    (bits 0) (tests)."""

class Filter:
    """The tag tables of one migration session: one 16-byte slot per guest page."""

    def __init__(self, algorithm: str, key: Buffer, *, dropping: bool = True) -> None: ...
    @property
    def dropping(self) -> bool:
        """False for a measuring filter: tags are kept and unchanged pages counted, but every
        page is forwarded."""
    def stop_dropping(self) -> None:
        """Forward every page from now on; returns once no batch of any channel is still
        working with dropping on."""
    def add_block(self, idstr: Buffer, length: int) -> int:
        """Register a RAMBlock (length rounded up to pages); returns its index."""
    def block_index(self, idstr: Buffer) -> int:
        """Index of a registered block, -1 if unknown."""
    @property
    def blocks(self) -> list[tuple[bytes, int]]:
        """Registered blocks as (idstr, rounded length)."""
    @property
    def memory_bytes(self) -> int:
        """Bytes held by all tag tables."""
    def filter(self, block: int, offsets: Buffer, pages: Buffer, *, channel: int = 0,
               interval: int = 0) -> bytes:
        """Keep mask (1 forward, 0 drop) of n pages at n be64 offsets, carried by multifd
        ``channel`` (0..12, or 15 = main) in barrier ``interval``; validates first. A page
        that another channel carried in the same interval with other content loses its tag
        (the destination applies channels in any order)."""
    def invalidate(self, block: int, offsets: Buffer, *, channel: int = 15,
                   interval: int = 0) -> None:
        """Forget the tags of the pages at these be64 offsets."""
    def invalidate_all(self) -> None:
        """Forget every tag."""
    def filter_multifd(self, packet: Buffer, payload: Buffer, *, channel: int = 0,
                       interval: int = 0) -> tuple[bytes, bytes, int, int, int]:
        """Filter one QEMU 7.2 multifd packet of ``channel`` in barrier ``interval``:
        (new_packet, kept_payload, kept, dropped, unchanged); ``unchanged`` counts the pages
        that matched their tag (dropped, or forwarded by a measuring filter)."""

class RamRewriter:
    """The main channel's RAM records of one migration, filtered and re-emitted canonically."""

    def __init__(self, filter: Filter, *, postcopy_page_size: bool = False,
                 ignore_shared: bool = False) -> None: ...
    def feed(self, data: Buffer) -> tuple[bytes, int, int]:
        """Rewrite the complete records at data's start: (out, consumed, status)."""
    @property
    def diverged(self) -> bool:
        """True when the source's last named block differs from the last block emitted."""
    @property
    def counters(self) -> dict[str, int]:
        """Cumulative counters (records, pages_seen, pages_forwarded, pages_dropped,
        pages_unchanged, ...)."""
    @property
    def last_error(self) -> str | None:
        """Why the last feed returned UNSUPPORTED or MALFORMED, or None."""
    @property
    def filter(self) -> Filter:
        """The Filter this rewriter uses."""
