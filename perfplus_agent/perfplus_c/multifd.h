/* QEMU 7.2 multifd packets (nocomp): validation and rewriting after filtering. */
#ifndef PP_MULTIFD_H
#define PP_MULTIFD_H

#include "filter.h"

#define PP_MULTIFD_MAGIC 0x11223344u
#define PP_MULTIFD_VERSION 1u
#define PP_MULTIFD_COMPRESSION_MASK (7u << 1)
#define PP_MULTIFD_HEADER 320u /* fixed part, up to and including ramblock[256] */
#define PP_MULTIFD_OFF_NORMAL 16u
#define PP_MULTIFD_OFF_NEXT_SIZE 20u
#define PP_MULTIFD_OFF_RAMBLOCK 64u
#define PP_MULTIFD_RAMBLOCK_LEN 256u

typedef struct pp_multifd_packet {
    uint32_t flags;
    uint32_t pages_alloc;
    uint32_t normal_pages;
    const char *ramblock; /* NUL-terminated inside the packet */
    size_t ramblock_len;
} pp_multifd_packet;

/* Checks a packet and the length of its payload.  Returns NULL, or a message written into
 * why (size whylen) describing the violation. */
const char *pp_multifd_parse(const uint8_t *pkt, size_t pktlen, size_t payload_len,
                             pp_multifd_packet *out, char *why, size_t whylen);

/* Checks that every offset of the packet lies inside b (page aligned); NULL or a message. */
const char *pp_multifd_check_offsets(const uint8_t *pkt, const pp_multifd_packet *p,
                                     const pp_block *b, char *why, size_t whylen);

/* Filters the packet's pages (carried with `stamp`, see filter.h) through b and writes the
 * rewritten packet (pktlen bytes) and the kept pages; returns the number of pages kept and
 * stores in *unchanged how many matched their tag (dropped, or forwarded when measuring).
 * Call after both checks passed. */
uint32_t pp_multifd_filter(const pp_filter *f, pp_block *b, const uint8_t *pkt, size_t pktlen,
                           const pp_multifd_packet *p, const uint8_t *payload,
                           uint8_t *new_pkt, uint8_t *kept_payload, uint8_t stamp,
                           uint32_t *unchanged);

#endif
