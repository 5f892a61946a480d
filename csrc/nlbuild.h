/*
 * nlbuild.h - building generic-netlink requests of the IPVS family: the
 * mirror of nlparse.h. No I/O, no allocation, no global state: everything is
 * written into a caller's buffer, so a fuzzer can build a request and parse
 * it back (fuzz/fuzz_nlbuild.c).
 *
 * A builder that runs out of room sets b->full and ignores what follows;
 * callers check b->full once, at the end.
 */
#ifndef IPVS_NLBUILD_H
#define IPVS_NLBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "libipvs.h"

struct nlb {
    unsigned char *buf;
    size_t cap;
    size_t len;
    int full;                  /* something did not fit */
};

static inline struct nlb nlb_init(unsigned char *buf, size_t cap)
{
    struct nlb b = { buf, cap, 0, 0 };
    return b;
}

/* A message: netlink + genl header. Returns its start offset for _end. */
size_t nlb_msg_begin(struct nlb *b, uint16_t type, uint16_t flags,
                     uint32_t seq, uint8_t cmd, uint8_t version);
void nlb_msg_end(struct nlb *b, size_t start);

/* Attributes. */
void nlb_put(struct nlb *b, uint16_t type, const void *data, size_t len);
void nlb_u8(struct nlb *b, uint16_t t, uint8_t v);
void nlb_u16(struct nlb *b, uint16_t t, uint16_t v);
void nlb_u32(struct nlb *b, uint16_t t, uint32_t v);
void nlb_be16(struct nlb *b, uint16_t t, uint16_t v);
/* s has n chars before its NUL; sent with the NUL */
void nlb_str(struct nlb *b, uint16_t t, const char *s, size_t n);
size_t nlb_nest_begin(struct nlb *b, uint16_t type);
void nlb_nest_end(struct nlb *b, size_t start);

/* Header fields of a message already built at msg. */
void nlb_set_flags(unsigned char *msg, uint16_t add);
void nlb_set_seq_type(unsigned char *msg, uint32_t seq, uint16_t type);

/* Length of a NUL-terminated name in a fixed array, or -1 if unterminated. */
int nlb_name_len(const char *s, size_t cap);

/* IPVS_CMD_ATTR_SERVICE: the key, plus the settings when full. -EINVAL for
 * an unterminated scheduler or engine name. */
int nlb_service(struct nlb *b, const struct ipvs_service *s, int full);
/* IPVS_CMD_ATTR_DEST: address, port (and family), plus settings when full. */
void nlb_dest(struct nlb *b, const struct ipvs_dest *d, int full);
/* IPVS_CMD_ATTR_DAEMON of NEW_DAEMON. -EINVAL for an unterminated interface
 * name, -EAFNOSUPPORT for a group family other than 0, AF_INET, AF_INET6. */
int nlb_daemon(struct nlb *b, const struct ipvs_daemon *d);
/* One service/destination operation (struct ipvs_op) as a whole message.
 * -EINVAL for an unknown op or a bad name (nothing is left in b then). */
int nlb_op(struct nlb *b, uint16_t fam, uint32_t seq, uint16_t flags,
           const struct ipvs_op *op);

#endif
