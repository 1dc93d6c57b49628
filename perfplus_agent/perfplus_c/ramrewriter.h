/* The main channel's RAM-section records (QEMU 7.2): parse, filter, re-emit canonically. */
#ifndef PP_RAMREWRITER_H
#define PP_RAMREWRITER_H

#include "filter.h"

#define RAM_SAVE_FLAG_FULL 0x01u
#define RAM_SAVE_FLAG_ZERO 0x02u
#define RAM_SAVE_FLAG_MEM_SIZE 0x04u
#define RAM_SAVE_FLAG_PAGE 0x08u
#define RAM_SAVE_FLAG_EOS 0x10u
#define RAM_SAVE_FLAG_CONTINUE 0x20u
#define RAM_SAVE_FLAG_XBZRLE 0x40u
#define RAM_SAVE_FLAG_HOOK 0x80u
#define RAM_SAVE_FLAG_COMPRESS_PAGE 0x100u

#define PP_XBZRLE_MAX 4096u
#define PP_COMPRESS_MAX 8192u

enum pp_feed_status {
    PP_NEED_MORE = 0,
    PP_EOS = 1,
    PP_UNSUPPORTED = 2,
    PP_MALFORMED = 3,
    PP_OUT_FULL = 4, /* internal: the output buffer cannot take the next record */
};

enum pp_counter {
    PP_C_RECORDS,
    PP_C_PAGES_SEEN,
    PP_C_PAGES_FORWARDED,
    PP_C_PAGES_DROPPED,
    PP_C_PAGES_UNCHANGED, /* matched their tag: dropped, or forwarded when measuring */
    PP_C_ZERO_PAGES,
    PP_C_XBZRLE_PAGES,
    PP_C_COMPRESSED_PAGES,
    PP_C_BYTES_IN,
    PP_C_BYTES_OUT,
    PP_C_EOS,
    PP_NCOUNTERS,
};

extern const char *const pp_counter_names[PP_NCOUNTERS];

typedef struct pp_rewriter {
    pp_filter *filter;
    int postcopy_page_size;
    int ignore_shared;
    int last_src;     /* block the source last named (its CONTINUE refers to it), -1 none */
    int last_emitted; /* block of the last record we emitted (the destination's view) */
    uint64_t counters[PP_NCOUNTERS];
    char why[512];    /* reason of the last UNSUPPORTED / MALFORMED */
} pp_rewriter;

void pp_rewriter_init(pp_rewriter *r, pp_filter *f, int postcopy_page_size, int ignore_shared);

/* Parses records from in[0..len) into out (capacity outcap) until a status; *consumed and
 * *produced receive the input bytes consumed and the output bytes written.  An output of
 * len + 256 bytes always suffices (PP_OUT_FULL otherwise, with nothing of that record
 * consumed). */
int pp_rewriter_feed(pp_rewriter *r, const uint8_t *in, size_t len, uint8_t *out, size_t outcap,
                     size_t *consumed, size_t *produced);

#endif
