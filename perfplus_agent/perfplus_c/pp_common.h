/* Shared constants and big-endian helpers of the Perf+ C core. */
#ifndef PP_COMMON_H
#define PP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PP_PAGE_SIZE 4096u
#define PP_PAGE_MASK ((uint64_t)PP_PAGE_SIZE - 1)
#define PP_TAG_SIZE 16u

static inline uint64_t pp_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap64(v);
}

static inline uint32_t pp_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap32(v);
}

static inline uint16_t pp_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline void pp_put_be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, sizeof v);
}

static inline void pp_put_be32(uint8_t *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, sizeof v);
}

#endif
