"""The Perf+ C core: page hashing and batch filtering (see docs/perfplus.md)."""

from perfplus_agent.perfplus_c._perfplus import ABI, PAGE_SIZE, TAG_SIZE

__all__ = ["ABI", "PAGE_SIZE", "TAG_SIZE"]
