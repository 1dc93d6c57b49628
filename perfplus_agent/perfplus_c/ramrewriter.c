/*
 * The main channel's RAM-section records (QEMU 7.2, migration/ram.c): parse, filter PAGE
 * records through the tag table, and re-emit every forwarded record in canonical form
 * (CONTINUE iff its block is the last block emitted on this channel), because dropping
 * records changes what the destination considers its last block.
 */
#include "ramrewriter.h"

#include <inttypes.h>
#include <stdio.h>

const char *const pp_counter_names[PP_NCOUNTERS] = {
    "records",      "pages_seen",       "pages_forwarded", "pages_dropped",
    "pages_unchanged", "zero_pages",   "xbzrle_pages",    "compressed_pages",
    "bytes_in",     "bytes_out",        "eos",
};

#define KNOWN_FLAGS                                                                         \
    (RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_MEM_SIZE | RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_EOS |   \
     RAM_SAVE_FLAG_CONTINUE | RAM_SAVE_FLAG_XBZRLE | RAM_SAVE_FLAG_COMPRESS_PAGE)

void pp_rewriter_init(pp_rewriter *r, pp_filter *f, int postcopy_page_size, int ignore_shared)
{
    memset(r, 0, sizeof *r);
    r->filter = f;
    r->postcopy_page_size = postcopy_page_size;
    r->ignore_shared = ignore_shared;
    r->last_src = -1;
    r->last_emitted = -1;
}

#define FAIL(status, ...)                                       \
    do {                                                        \
        snprintf(r->why, sizeof r->why, __VA_ARGS__);           \
        return (status);                                        \
    } while (0)

/* MEM_SIZE: checks the whole block list, then registers the blocks.  Returns a status, or
 * -1 with *reclen set when the record is complete and accepted. */
static int mem_size(pp_rewriter *r, const uint8_t *rec, size_t avail, uint64_t total,
                    size_t *reclen)
{
    size_t extra = 8 * (size_t)(!!r->postcopy_page_size + !!r->ignore_shared);
    size_t p = 8;
    uint64_t sum = 0;

    while (sum < total) {
        if (avail - p < 1)
            return PP_NEED_MORE;
        size_t idlen = rec[p];
        if (idlen == 0)
            FAIL(PP_MALFORMED, "MEM_SIZE entry with an empty idstr");
        if (avail - p < 1 + idlen + 8 + extra)
            return PP_NEED_MORE;
        uint64_t length = pp_be64(rec + p + 1 + idlen);
        if (length == 0 || length > total - sum)
            FAIL(PP_MALFORMED, "MEM_SIZE entry '%.*s' of 0x%" PRIx64 " bytes does not fit the "
                 "announced total 0x%" PRIx64, (int)idlen, (const char *)rec + p + 1, length,
                 total);
        int known = pp_filter_find(r->filter, (const char *)rec + p + 1, idlen);
        if (known >= 0 && pp_filter_block(r->filter, known)->length !=
                              ((length + PP_PAGE_MASK) & ~PP_PAGE_MASK))
            FAIL(PP_MALFORMED, "MEM_SIZE block '%.*s' already registered with another length",
                 (int)idlen, (const char *)rec + p + 1);
        sum += length;
        p += 1 + idlen + 8 + extra;
    }
    for (size_t q = 8; q < p;) {
        size_t idlen = rec[q];
        int index;
        int rc = pp_filter_add_block(r->filter, (const char *)rec + q + 1, idlen,
                                     pp_be64(rec + q + 1 + idlen), 1, &index);
        if (rc != PP_OK)
            FAIL(PP_MALFORMED, "MEM_SIZE block '%.*s' cannot be registered (%s)", (int)idlen,
                 (const char *)rec + q + 1,
                 rc == PP_ERR_FULL ? "too many blocks" :
                 rc == PP_ERR_NOMEM ? "out of memory" : "listed twice with different lengths");
        q += 1 + idlen + 8 + extra;
    }
    *reclen = p;
    return -1;
}

int pp_rewriter_feed(pp_rewriter *r, const uint8_t *in, size_t len, uint8_t *out, size_t outcap,
                     size_t *consumed, size_t *produced)
{
    size_t pos = 0, o = 0;
    int status;

    r->why[0] = '\0';
    for (;;) {
        const uint8_t *rec = in + pos;
        size_t avail = len - pos;
        if (avail < 8) {
            status = PP_NEED_MORE;
            break;
        }
        uint64_t hdr = pp_be64(rec);
        uint32_t flags = (uint32_t)(hdr & PP_PAGE_MASK);
        uint64_t addr = hdr & ~PP_PAGE_MASK;
        uint32_t kind = flags & ~RAM_SAVE_FLAG_CONTINUE;

        if (flags & ~KNOWN_FLAGS) {
            snprintf(r->why, sizeof r->why, "record flags 0x%03" PRIx32 " (HOOK, FULL or "
                     "unknown bits) are not handled", flags);
            status = PP_UNSUPPORTED;
            break;
        }
        if (kind == 0 || (kind & (kind - 1)) != 0 ||
            ((flags & RAM_SAVE_FLAG_CONTINUE) &&
             (kind == RAM_SAVE_FLAG_EOS || kind == RAM_SAVE_FLAG_MEM_SIZE))) {
            snprintf(r->why, sizeof r->why, "record flags 0x%03" PRIx32 " are not exactly one "
                     "payload kind", flags);
            status = PP_UNSUPPORTED;
            break;
        }

        if (kind == RAM_SAVE_FLAG_EOS || kind == RAM_SAVE_FLAG_MEM_SIZE) {
            size_t reclen = 8;
            if (kind == RAM_SAVE_FLAG_MEM_SIZE) {
                status = mem_size(r, rec, avail, addr, &reclen);
                if (status >= 0)
                    break;
            }
            if (outcap - o < reclen) {
                status = PP_OUT_FULL;
                break;
            }
            memcpy(out + o, rec, reclen);
            o += reclen;
            pos += reclen;
            r->counters[PP_C_RECORDS]++;
            if (kind == RAM_SAVE_FLAG_EOS) {
                r->counters[PP_C_EOS]++;
                status = PP_EOS;
                break;
            }
            continue;
        }

        /* a page record: ZERO, PAGE, XBZRLE or COMPRESS_PAGE */
        size_t p = 8;
        int bi;
        if (flags & RAM_SAVE_FLAG_CONTINUE) {
            if (r->last_src < 0) {
                snprintf(r->why, sizeof r->why, "CONTINUE record without a previous block");
                status = PP_MALFORMED;
                break;
            }
            bi = r->last_src;
        } else {
            if (avail < 9) {
                status = PP_NEED_MORE;
                break;
            }
            size_t idlen = rec[8];
            if (idlen == 0) {
                snprintf(r->why, sizeof r->why, "page record with an empty idstr");
                status = PP_MALFORMED;
                break;
            }
            if (avail < 9 + idlen) {
                status = PP_NEED_MORE;
                break;
            }
            bi = pp_filter_find(r->filter, (const char *)rec + 9, idlen);
            if (bi < 0) {
                snprintf(r->why, sizeof r->why, "page record for unknown block '%.*s'",
                         (int)idlen, (const char *)rec + 9);
                status = PP_MALFORMED;
                break;
            }
            p = 9 + idlen;
        }
        pp_block *b = pp_filter_block(r->filter, bi);

        size_t plen;
        if (kind == RAM_SAVE_FLAG_ZERO) {
            plen = 1;
        } else if (kind == RAM_SAVE_FLAG_PAGE) {
            plen = PP_PAGE_SIZE;
        } else if (kind == RAM_SAVE_FLAG_XBZRLE) {
            if (avail - p < 3) {
                status = PP_NEED_MORE;
                break;
            }
            uint16_t xlen = pp_be16(rec + p + 1);
            if (rec[p] != 1 || xlen > PP_XBZRLE_MAX) {
                snprintf(r->why, sizeof r->why, "XBZRLE record with encoding %u and length %u",
                         rec[p], xlen);
                status = PP_MALFORMED;
                break;
            }
            plen = 3 + (size_t)xlen;
        } else {
            if (avail - p < 4) {
                status = PP_NEED_MORE;
                break;
            }
            uint32_t clen = pp_be32(rec + p);
            if (clen > PP_COMPRESS_MAX) {
                snprintf(r->why, sizeof r->why, "COMPRESS_PAGE record of %" PRIu32 " bytes",
                         clen);
                status = PP_MALFORMED;
                break;
            }
            plen = 4 + (size_t)clen;
        }
        if (avail - p < plen) {
            status = PP_NEED_MORE;
            break;
        }
        if (!pp_block_offset_ok(b, addr)) {
            snprintf(r->why, sizeof r->why, "offset 0x%" PRIx64 " outside block '%s' "
                     "(0x%" PRIx64 " bytes)", addr, b->idstr, b->length);
            status = PP_MALFORMED;
            break;
        }
        int cont = bi == r->last_emitted;
        size_t outlen = 8 + (cont ? 0 : 1 + (size_t)b->idlen) + plen;
        if (outcap - o < outlen) {
            status = PP_OUT_FULL;
            break;
        }

        /* the record is complete and valid: from here on it is consumed */
        const uint8_t *payload = rec + p;
        int emit = 1;
        r->last_src = bi;
        r->counters[PP_C_RECORDS]++;
        if (kind == RAM_SAVE_FLAG_PAGE) {
            r->counters[PP_C_PAGES_SEEN]++;
            int same;
            emit = pp_filter_page(r->filter, b, addr, payload,
                                  pp_stamp(PP_CHANNEL_MAIN, r->counters[PP_C_EOS]), &same);
            r->counters[emit ? PP_C_PAGES_FORWARDED : PP_C_PAGES_DROPPED]++;
            r->counters[PP_C_PAGES_UNCHANGED] += (uint64_t)same;
        } else {
            pp_block_invalidate(b, addr, pp_stamp(PP_CHANNEL_MAIN, r->counters[PP_C_EOS]));
            r->counters[kind == RAM_SAVE_FLAG_ZERO     ? PP_C_ZERO_PAGES :
                        kind == RAM_SAVE_FLAG_XBZRLE   ? PP_C_XBZRLE_PAGES :
                                                         PP_C_COMPRESSED_PAGES]++;
        }
        if (emit) {
            if (cont) {
                pp_put_be64(out + o, addr | kind | RAM_SAVE_FLAG_CONTINUE);
                o += 8;
            } else {
                pp_put_be64(out + o, addr | kind);
                out[o + 8] = b->idlen;
                memcpy(out + o + 9, b->idstr, b->idlen);
                o += 9 + (size_t)b->idlen;
                r->last_emitted = bi;
            }
            memcpy(out + o, payload, plen);
            o += plen;
        }
        pos += p + plen;
    }
    r->counters[PP_C_BYTES_IN] += pos;
    r->counters[PP_C_BYTES_OUT] += o;
    *consumed = pos;
    *produced = o;
    return status;
}
