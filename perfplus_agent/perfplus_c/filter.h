/* The Perf+ tag tables: one 16-byte slot per guest page of each registered RAMBlock. */
#ifndef PP_FILTER_H
#define PP_FILTER_H

#include <pthread.h>

#include "hashes.h"

#define PP_MAX_BLOCKS 1024
#define PP_IDSTR_MAX 255

/*
 * Channels of a migration run in parallel and the destination applies them in any
 * interleaving within an interval (the stretch between two SYNC/EOS barriers), although
 * each channel in order.  QEMU 7.2 does send a page twice in one interval, even on two
 * channels (the last page of a full multifd batch is queued again as the first of the
 * next), and the two copies can differ if the guest wrote in between.  Which copy the
 * destination kept is then unknown, so its tag must be forgotten.  A one-byte stamp per
 * page records which channel last carried it in which interval (interval mod 16 in the high
 * nibble, channel in the low one); a copy from another channel in the same interval
 * forgets the tag unless it is identical.  An aliased interval (16 apart) only costs a
 * forgotten tag, never a wrong drop.
 */
#define PP_CHANNEL_NONE 13u    /* no channel carried the page yet */
#define PP_CHANNEL_SEVERAL 14u /* several channels carried the page in this interval */
#define PP_CHANNEL_MAIN 15u
#define PP_MAX_MULTIFD_CHANNELS 13u

/* Did another channel than the one of `stamp` carry the page in the same interval? */
static inline int pp_stamp_shared(uint8_t old, uint8_t stamp)
{
    return (old & 0xFu) != PP_CHANNEL_NONE && (old >> 4) == (stamp >> 4) &&
           (old & 0xFu) != (stamp & 0xFu);
}

static inline uint8_t pp_stamp(unsigned channel, uint64_t interval)
{
    return (uint8_t)(((interval & 0xFu) << 4) | (channel & 0xFu));
}

typedef struct pp_block {
    uint64_t length; /* bytes, rounded up to a page multiple */
    uint64_t npages;
    uint8_t (*tags)[PP_TAG_SIZE]; /* all-zero slot = no tag; bit 0 of byte 0 set = valid */
    uint8_t *stamps;              /* per page: pp_stamp() of the last channel that carried it */
    uint8_t idlen;
    char idstr[PP_IDSTR_MAX + 1];
} pp_block;

/*
 * Blocks are only ever appended: a block pointer is stored before nblocks is published
 * (release), so lookups from other threads need no lock.  Slots are owned by one page each:
 * threads working on different pages never touch the same bytes.
 */
typedef struct pp_filter {
    pp_hasher hasher;
    pthread_mutex_t lock;  /* serialises block registration */
    pthread_mutex_t pages; /* serialises page work of all channels (pp_filter_lock) */
    int dropping;          /* 0: measure only (tags and counts kept, every page forwarded) */
    int nblocks;          /* accessed with __atomic builtins */
    uint64_t memory_bytes;
    pp_block *blocks[PP_MAX_BLOCKS];
} pp_filter;

enum {
    PP_OK = 0,
    PP_ERR_NOMEM = -1,
    PP_ERR_DUPLICATE = -2,  /* idstr already registered (with another length for ensure) */
    PP_ERR_ARGUMENT = -3,   /* bad idstr length or zero block length */
    PP_ERR_FULL = -4,       /* PP_MAX_BLOCKS reached */
};

int pp_filter_init(pp_filter *f, int alg, const uint8_t *key, size_t keylen, int dropping);
void pp_filter_destroy(pp_filter *f);
/* Registers a block; *index receives its index.  With ensure, an existing block of the same
 * (rounded) length is accepted and its index returned. */
int pp_filter_add_block(pp_filter *f, const char *idstr, size_t idlen, uint64_t length,
                        int ensure, int *index);
int pp_filter_find(pp_filter *f, const char *idstr, size_t idlen); /* -1 if unknown */
int pp_filter_count(pp_filter *f);
pp_block *pp_filter_block(pp_filter *f, int index); /* NULL if out of range */
void pp_filter_invalidate_all(pp_filter *f);

static inline int pp_block_offset_ok(const pp_block *b, uint64_t offset)
{
    return (offset & PP_PAGE_MASK) == 0 && offset < b->length;
}

/* Page work (pp_filter_page, pp_block_invalidate) happens with this lock held. */
static inline void pp_filter_lock(pp_filter *f) { pthread_mutex_lock(&f->pages); }
static inline void pp_filter_unlock(pp_filter *f) { pthread_mutex_unlock(&f->pages); }

/* Tags the page at a validated offset, carried by the channel and interval of `stamp`.
 * *unchanged is set to 1 when the slot already held this exact valid tag (the destination
 * holds this content whichever copy it applied last), else 0.  Returns 0 (drop) for an
 * unchanged page when f->dropping, else 1 (forward): a measuring filter forwards every page
 * and stamps the unchanged ones as carried. */
int pp_filter_page(const pp_filter *f, pp_block *b, uint64_t offset, const uint8_t *page,
                   uint8_t stamp, int *unchanged);

/* Forgets the tag of a page the destination receives in a form the filter does not track
 * (zero page, XBZRLE, compressed), and stamps it. */
static inline void pp_block_invalidate(pp_block *b, uint64_t offset, uint8_t stamp)
{
    uint64_t i = offset / PP_PAGE_SIZE;
    uint8_t old = b->stamps[i];

    memset(b->tags[i], 0, PP_TAG_SIZE);
    if (pp_stamp_shared(old, stamp))
        stamp = (uint8_t)((stamp & 0xF0u) | PP_CHANNEL_SEVERAL);
    b->stamps[i] = stamp;
}

#endif
