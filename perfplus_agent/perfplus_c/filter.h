/* The Perf+ tag tables: one 16-byte slot per guest page of each registered RAMBlock. */
#ifndef PP_FILTER_H
#define PP_FILTER_H

#include <pthread.h>

#include "hashes.h"

#define PP_MAX_BLOCKS 1024
#define PP_IDSTR_MAX 255

typedef struct pp_block {
    uint64_t length; /* bytes, rounded up to a page multiple */
    uint64_t npages;
    uint8_t (*tags)[PP_TAG_SIZE]; /* all-zero slot = no tag; bit 0 of byte 0 set = valid */
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
    pthread_mutex_t lock; /* serialises block registration only */
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

int pp_filter_init(pp_filter *f, int alg, const uint8_t *key, size_t keylen);
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

/* Tags the page at a validated offset: returns 1 (forward: the tag is new or changed, and now
 * stored) or 0 (drop: the slot already held this exact valid tag). */
int pp_filter_page(const pp_hasher *h, pp_block *b, uint64_t offset, const uint8_t *page);

static inline void pp_block_invalidate(pp_block *b, uint64_t offset)
{
    memset(b->tags[offset / PP_PAGE_SIZE], 0, PP_TAG_SIZE);
}

#endif
