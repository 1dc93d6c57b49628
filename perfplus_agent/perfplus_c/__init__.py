"""The Perf+ C core: page hashing and batch filtering (see docs/perfplus.md).

Everything per page runs in C over whole batches with the GIL released. A ``Filter`` keeps,
per guest page of each registered RAMBlock, a 16-byte tag of the content last forwarded
(bit 0 of byte 0 set = valid, all zero = no tag); a page resent with the same tag is dropped.
``RamRewriter`` applies it to the main channel's RAM records, ``Filter.filter_multifd`` to
multifd packets. Algorithms: ``highwayhash`` (default, keyed, 256-bit key), ``siphash``
(libsodium siphashx24, 128-bit key) and ``md5`` (unkeyed, paper fidelity only: UNSAFE
against a hostile guest, MD5 collisions are crafted in seconds).
"""

from perfplus_agent.perfplus_c._perfplus import (
    ABI,
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    EOS,
    HIGHWAYHASH_TARGET,
    MALFORMED,
    NEED_MORE,
    PAGE_SIZE,
    TAG_SIZE,
    UNSUPPORTED,
    Filter,
    RamRewriter,
    UnsupportedStream,
    copy_pages,
    hash_pages,
    key_size,
    new_key,
)

__all__ = [
    "ABI",
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "EOS",
    "HIGHWAYHASH_TARGET",
    "MALFORMED",
    "NEED_MORE",
    "PAGE_SIZE",
    "TAG_SIZE",
    "UNSUPPORTED",
    "Filter",
    "RamRewriter",
    "UnsupportedStream",
    "copy_pages",
    "hash_pages",
    "key_size",
    "new_key",
]
