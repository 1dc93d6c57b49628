/* Tag tables of the Perf+ filter. */
#include "filter.h"

#include <stdlib.h>

int pp_filter_init(pp_filter *f, int alg, const uint8_t *key, size_t keylen, int dropping)
{
    memset(f, 0, sizeof *f);
    f->dropping = !!dropping;
    if (pp_hasher_init(&f->hasher, alg, key, keylen) < 0)
        return PP_ERR_ARGUMENT;
    if (pthread_mutex_init(&f->lock, NULL) != 0)
        return PP_ERR_NOMEM;
    if (pthread_mutex_init(&f->pages, NULL) != 0) {
        pthread_mutex_destroy(&f->lock);
        return PP_ERR_NOMEM;
    }
    return PP_OK;
}

void pp_filter_destroy(pp_filter *f)
{
    for (int i = 0; i < f->nblocks; i++) {
        free(f->blocks[i]->tags);
        free(f->blocks[i]->stamps);
        free(f->blocks[i]);
        f->blocks[i] = NULL;
    }
    f->nblocks = 0;
    pthread_mutex_destroy(&f->lock);
    pthread_mutex_destroy(&f->pages);
    memset(&f->hasher, 0, sizeof f->hasher);
}

int pp_filter_count(pp_filter *f)
{
    return __atomic_load_n(&f->nblocks, __ATOMIC_ACQUIRE);
}

pp_block *pp_filter_block(pp_filter *f, int index)
{
    if (index < 0 || index >= pp_filter_count(f))
        return NULL;
    return f->blocks[index];
}

int pp_filter_find(pp_filter *f, const char *idstr, size_t idlen)
{
    int n = pp_filter_count(f);

    for (int i = 0; i < n; i++) {
        const pp_block *b = f->blocks[i];
        if (b->idlen == idlen && memcmp(b->idstr, idstr, idlen) == 0)
            return i;
    }
    return -1;
}

int pp_filter_add_block(pp_filter *f, const char *idstr, size_t idlen, uint64_t length,
                        int ensure, int *index)
{
    int rc = PP_OK;

    if (idlen < 1 || idlen > PP_IDSTR_MAX || length == 0 || length > UINT64_MAX - PP_PAGE_MASK)
        return PP_ERR_ARGUMENT;
    length = (length + PP_PAGE_MASK) & ~PP_PAGE_MASK;
    pthread_mutex_lock(&f->lock);
    int existing = pp_filter_find(f, idstr, idlen);
    if (existing >= 0) {
        if (ensure && f->blocks[existing]->length == length)
            *index = existing;
        else
            rc = PP_ERR_DUPLICATE;
        goto out;
    }
    if (f->nblocks >= PP_MAX_BLOCKS) {
        rc = PP_ERR_FULL;
        goto out;
    }
    pp_block *b = calloc(1, sizeof *b);
    if (b == NULL) {
        rc = PP_ERR_NOMEM;
        goto out;
    }
    b->length = length;
    b->npages = length / PP_PAGE_SIZE;
    /* calloc of a large table maps zero pages lazily: untouched guest pages cost nothing */
    b->tags = calloc(b->npages, PP_TAG_SIZE);
    b->stamps = malloc(b->npages);
    if (b->tags == NULL || b->stamps == NULL) {
        free(b->tags);
        free(b->stamps);
        free(b);
        rc = PP_ERR_NOMEM;
        goto out;
    }
    memset(b->stamps, PP_CHANNEL_NONE, b->npages);
    b->idlen = (uint8_t)idlen;
    memcpy(b->idstr, idstr, idlen);
    f->blocks[f->nblocks] = b;
    __atomic_add_fetch(&f->memory_bytes, b->npages * (PP_TAG_SIZE + 1), __ATOMIC_RELAXED);
    *index = f->nblocks;
    __atomic_store_n(&f->nblocks, f->nblocks + 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&f->lock);
    return rc;
}

void pp_filter_invalidate_all(pp_filter *f)
{
    int n = pp_filter_count(f);

    pp_filter_lock(f);
    for (int i = 0; i < n; i++)
        memset(f->blocks[i]->tags, 0, f->blocks[i]->npages * PP_TAG_SIZE);
    pp_filter_unlock(f);
}

int pp_filter_page(const pp_filter *f, pp_block *b, uint64_t offset, const uint8_t *page,
                   uint8_t stamp, int *unchanged)
{
    uint64_t index = offset / PP_PAGE_SIZE;
    uint8_t *slot = b->tags[index];
    uint8_t old = b->stamps[index];
    uint8_t tag[PP_TAG_SIZE];
    uint64_t t[2], s[2];
    /* another channel already carried this page in this interval */
    int shared = pp_stamp_shared(old, stamp);

    *unchanged = 0;
    if (pp_hash(&f->hasher, page, PP_PAGE_SIZE, tag) < 0) {
        pp_block_invalidate(b, offset, stamp); /* no tag known: forward, never drop */
        return 1;
    }
    tag[0] |= 1;
    memcpy(t, tag, sizeof t);
    memcpy(s, slot, sizeof s);
    if (s[0] == t[0] && s[1] == t[1]) {
        *unchanged = 1;
        if (f->dropping)
            return 0;
        /* forwarded although unchanged: the copy is in flight like any other, and every
         * copy in flight on another channel in this interval equals the tag */
        b->stamps[index] = shared ? (uint8_t)((stamp & 0xF0u) | PP_CHANNEL_SEVERAL) : stamp;
        return 1;
    }
    if (shared) {
        /* two different copies in flight on two channels: the destination keeps either */
        pp_block_invalidate(b, offset, stamp);
        return 1;
    }
    memcpy(slot, tag, PP_TAG_SIZE);
    b->stamps[index] = stamp;
    return 1;
}
