/*
 * nlparse.h - pure parsing of generic-netlink replies of the IPVS family.
 *
 * No I/O, no allocation, no global state: every function reads only
 * buf[0..len) and returns 0 (or 1 for "found" in the walkers) or a negative
 * errno, -EBADMSG for anything malformed or truncated. Unknown attributes are
 * skipped. The input needs no particular alignment, so a fuzzer may pass
 * arbitrary bytes.
 */
#ifndef IPVS_NLPARSE_H
#define IPVS_NLPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "libipvs.h"
#include "uapi.h"

/* One netlink message found in a buffer. */
struct nlp_msg {
    uint32_t len;            /* nlmsg_len */
    uint16_t type;
    uint16_t flags;
    uint32_t seq;
    uint32_t pid;
    const uint8_t *data;     /* payload after the 16-byte header */
    size_t datalen;
};

/* One attribute. type has NLA_F_NESTED / NLA_F_NET_BYTEORDER removed. */
struct nlp_attr {
    uint16_t type;
    const uint8_t *data;     /* payload after the 4-byte header */
    size_t len;
};

/* Next message of buf[0..len) at *off (start with 0). 1 = *m filled and *off
 * advanced, 0 = no more messages, -EBADMSG = broken framing. */
int nlp_next_msg(const uint8_t *buf, size_t len, size_t *off, struct nlp_msg *m);

/* Next attribute of buf[0..len) at *off. Same returns as nlp_next_msg. */
int nlp_next_attr(const uint8_t *buf, size_t len, size_t *off, struct nlp_attr *a);

/* NLMSG_ERROR or NLMSG_DONE: *error = 0 or a negative errno; msg gets the
 * extended-ack message (NLMSGERR_ATTR_MSG) or "" (msg may be NULL). */
int nlp_parse_error(const struct nlp_msg *m, int *error, char *msg, size_t msgsz);

/* Generic netlink payload: the command and the attribute area after the
 * 4-byte genl header. */
int nlp_genl(const struct nlp_msg *m, uint8_t *cmd, const uint8_t **attrs, size_t *alen);

/* CTRL_CMD_NEWFAMILY reply: the family id. -EBADMSG when missing. */
int nlp_parse_family_msg(const struct nlp_msg *m, uint16_t *id);

/* Nested attribute contents (the payload of IPVS_*_ATTR_STATS[64]). */
int nlp_parse_stats(const uint8_t *buf, size_t len, struct ipvs_stats *out);
/* Payload of IPVS_CMD_ATTR_SERVICE. Needs AF and FWMARK or PROTOCOL+ADDR+PORT. */
int nlp_parse_service(const uint8_t *buf, size_t len, struct ipvs_service *out);
/* Payload of IPVS_CMD_ATTR_DEST. Needs ADDR and PORT. dest->af is ADDR_FAMILY
 * when present (has_af = 1), else svc_af. */
int nlp_parse_dest(const uint8_t *buf, size_t len, uint16_t svc_af, struct ipvs_dest *out);
/* Payload of IPVS_CMD_ATTR_DAEMON. Needs STATE. */
int nlp_parse_daemon(const uint8_t *buf, size_t len, struct ipvs_daemon *out);

/* Whole reply messages (genl header + top-level attributes). */
int nlp_parse_service_msg(const struct nlp_msg *m, struct ipvs_service *out);
int nlp_parse_dest_msg(const struct nlp_msg *m, uint16_t svc_af, struct ipvs_dest *out);
int nlp_parse_daemon_msg(const struct nlp_msg *m, struct ipvs_daemon *out);
int nlp_parse_info_msg(const struct nlp_msg *m, struct ipvs_info *out);
int nlp_parse_config_msg(const struct nlp_msg *m, struct ipvs_timeouts *out);

#endif
