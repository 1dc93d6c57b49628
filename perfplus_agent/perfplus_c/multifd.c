/* QEMU 7.2 multifd packets (nocomp): validation and rewriting after filtering. */
#include "multifd.h"

#include <inttypes.h>
#include <stdio.h>

const char *pp_multifd_parse(const uint8_t *pkt, size_t pktlen, size_t payload_len,
                             pp_multifd_packet *out, char *why, size_t whylen)
{
    if (pktlen < PP_MULTIFD_HEADER) {
        snprintf(why, whylen, "multifd packet of %zu bytes is shorter than its %u-byte header",
                 pktlen, PP_MULTIFD_HEADER);
        return why;
    }
    uint32_t magic = pp_be32(pkt), version = pp_be32(pkt + 4);
    out->flags = pp_be32(pkt + 8);
    out->pages_alloc = pp_be32(pkt + 12);
    out->normal_pages = pp_be32(pkt + PP_MULTIFD_OFF_NORMAL);
    if (magic != PP_MULTIFD_MAGIC) {
        snprintf(why, whylen, "multifd packet magic 0x%08" PRIx32 " (expected 0x%08x)", magic,
                 PP_MULTIFD_MAGIC);
        return why;
    }
    if (version != PP_MULTIFD_VERSION) {
        snprintf(why, whylen, "multifd packet version %" PRIu32 " (only %u is supported)",
                 version, PP_MULTIFD_VERSION);
        return why;
    }
    if (out->flags & PP_MULTIFD_COMPRESSION_MASK) {
        snprintf(why, whylen, "multifd packet is compressed (flags 0x%" PRIx32
                 "); Perf+ needs multifd-compression=none", out->flags);
        return why;
    }
    if (out->normal_pages > out->pages_alloc) {
        snprintf(why, whylen, "multifd packet has %" PRIu32 " pages but room for %" PRIu32,
                 out->normal_pages, out->pages_alloc);
        return why;
    }
    if ((uint64_t)pktlen != PP_MULTIFD_HEADER + 8 * (uint64_t)out->pages_alloc) {
        snprintf(why, whylen, "multifd packet of %zu bytes, expected %" PRIu64
                 " for pages_alloc %" PRIu32, pktlen,
                 PP_MULTIFD_HEADER + 8 * (uint64_t)out->pages_alloc, out->pages_alloc);
        return why;
    }
    if ((uint64_t)payload_len != (uint64_t)out->normal_pages * PP_PAGE_SIZE) {
        snprintf(why, whylen, "multifd payload of %zu bytes, expected %" PRIu64
                 " for %" PRIu32 " pages", payload_len,
                 (uint64_t)out->normal_pages * PP_PAGE_SIZE, out->normal_pages);
        return why;
    }
    out->ramblock = (const char *)pkt + PP_MULTIFD_OFF_RAMBLOCK;
    out->ramblock_len = strnlen(out->ramblock, PP_MULTIFD_RAMBLOCK_LEN);
    if (out->ramblock_len == PP_MULTIFD_RAMBLOCK_LEN) {
        snprintf(why, whylen, "multifd packet ramblock name is not NUL-terminated");
        return why;
    }
    return NULL;
}

const char *pp_multifd_check_offsets(const uint8_t *pkt, const pp_multifd_packet *p,
                                     const pp_block *b, char *why, size_t whylen)
{
    const uint8_t *offsets = pkt + PP_MULTIFD_HEADER;

    for (uint32_t i = 0; i < p->normal_pages; i++) {
        uint64_t off = pp_be64(offsets + 8 * (size_t)i);
        if (!pp_block_offset_ok(b, off)) {
            snprintf(why, whylen, "multifd page %" PRIu32 " offset 0x%" PRIx64
                     " is misaligned or outside block '%s' (0x%" PRIx64 " bytes)", i, off,
                     b->idstr, b->length);
            return why;
        }
    }
    return NULL;
}

uint32_t pp_multifd_filter(const pp_filter *f, pp_block *b, const uint8_t *pkt, size_t pktlen,
                           const pp_multifd_packet *p, const uint8_t *payload,
                           uint8_t *new_pkt, uint8_t *kept_payload, uint8_t stamp,
                           uint32_t *unchanged)
{
    const uint8_t *offsets = pkt + PP_MULTIFD_HEADER;
    uint8_t *new_offsets = new_pkt + PP_MULTIFD_HEADER;
    uint32_t kept = 0, same = 0;

    memcpy(new_pkt, pkt, PP_MULTIFD_HEADER);
    for (uint32_t i = 0; i < p->normal_pages; i++) {
        const uint8_t *page = payload + (size_t)i * PP_PAGE_SIZE;
        int match;
        int forward = pp_filter_page(f, b, pp_be64(offsets + 8 * (size_t)i), page, stamp, &match);
        same += (uint32_t)match;
        if (forward) {
            memcpy(new_offsets + 8 * (size_t)kept, offsets + 8 * (size_t)i, 8);
            memcpy(kept_payload + (size_t)kept * PP_PAGE_SIZE, page, PP_PAGE_SIZE);
            kept++;
        }
    }
    memset(new_offsets + 8 * (size_t)kept, 0, pktlen - PP_MULTIFD_HEADER - 8 * (size_t)kept);
    pp_put_be32(new_pkt + PP_MULTIFD_OFF_NORMAL, kept);
    pp_put_be32(new_pkt + PP_MULTIFD_OFF_NEXT_SIZE, kept * PP_PAGE_SIZE);
    *unchanged = same;
    return kept;
}
