/*
 * fuzz_nlbuild.c - libFuzzer target: build -> parse round trips of
 * csrc/nlbuild.c through csrc/nlparse.c.
 *
 * The input fills a struct ipvs_op and a struct ipvs_daemon byte for byte
 * (any values, names unterminated included) and picks the buffer size (so
 * that running out of room is exercised too). Whatever the builder accepts
 * and fits must parse back, by the same parsers that read the kernel's
 * replies, to exactly the fields the builder sends; whatever it refuses must
 * be refused for a reason it documents (unterminated name, unknown op, bad
 * group family), leaving nothing in the buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>

#include "nlbuild.h"
#include "nlparse.h"
#include "uapi.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static size_t take(void *dst, size_t n, const uint8_t **p, size_t *left)
{
    size_t k = n < *left ? n : *left;
    memset(dst, 0, n);
    memcpy(dst, *p, k);
    *p += k;
    *left -= k;
    return k;
}

static int terminated(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

/* The one message in buf[0..len): its header and genl command. */
static void one_message(const uint8_t *buf, size_t len, uint16_t type, uint16_t flags,
                        uint32_t seq, uint8_t cmd_want, const uint8_t **attrs, size_t *alen)
{
    struct nlp_msg m;
    size_t off = 0;
    uint8_t cmd;
    CHECK(nlp_next_msg(buf, len, &off, &m) == 1);
    CHECK(m.len == len && m.type == type && m.flags == flags && m.seq == seq && m.pid == 0);
    CHECK(nlp_next_msg(buf, len, &off, &m) == 0);
    off = 0;
    CHECK(nlp_next_msg(buf, len, &off, &m) == 1);
    CHECK(nlp_genl(&m, &cmd, attrs, alen) == 0);
    CHECK(cmd == cmd_want);
    CHECK(m.data[1] == K_IPVS_GENL_VERSION);
}

/* The nested top-level attribute of that type, exactly once. */
static int find(const uint8_t *attrs, size_t alen, uint16_t type,
                const uint8_t **nb, size_t *nlen)
{
    size_t off = 0;
    struct nlp_attr a;
    int found = 0, r;
    while ((r = nlp_next_attr(attrs, alen, &off, &a)) > 0) {
        if (a.type == type) {
            CHECK(!found);
            found = 1;
            *nb = a.data;
            *nlen = a.len;
        }
    }
    CHECK(r == 0);
    return found;
}

static void check_service(const struct ipvs_service *in, const struct ipvs_service *out, int full)
{
    CHECK(out->af == in->af);
    CHECK(out->fwmark == in->fwmark);
    if (!in->fwmark) {
        CHECK(out->protocol == in->protocol);
        CHECK(memcmp(out->addr.bytes, in->addr.bytes, 16) == 0);
        CHECK(out->port == in->port);
    }
    if (full) {
        CHECK(strcmp(out->sched_name, in->sched_name) == 0);
        CHECK(strcmp(out->pe_name, in->pe_name) == 0);
        CHECK(out->flags == in->flags);
        CHECK(out->flags_mask == (in->flags_mask ? in->flags_mask : ~0u));
        CHECK(out->timeout == in->timeout);
        CHECK(out->netmask == in->netmask);
    } else {
        CHECK(out->sched_name[0] == '\0' && out->flags == 0 && out->timeout == 0);
    }
}

static void check_dest(const struct ipvs_dest *in, uint16_t svc_af,
                       const struct ipvs_dest *out, int full)
{
    uint32_t fwd = in->conn_flags & IPVS_FWD_MASK;
    CHECK(memcmp(out->addr.bytes, in->addr.bytes, 16) == 0);
    CHECK(out->port == in->port);
    CHECK(out->has_af == (in->af != 0));
    CHECK(out->af == (in->af ? in->af : svc_af));
    if (full) {
        CHECK(out->conn_flags == fwd);
        CHECK(out->weight == in->weight);
        CHECK(out->u_threshold == in->u_threshold && out->l_threshold == in->l_threshold);
        CHECK(out->has_tun == (fwd == IPVS_FWD_TUNNEL));
        if (fwd == IPVS_FWD_TUNNEL)
            CHECK(out->tun_type == in->tun_type && out->tun_port == in->tun_port &&
                  out->tun_flags == in->tun_flags);
    } else {
        CHECK(out->conn_flags == 0 && out->weight == 0 && !out->has_tun);
    }
}

static void op_round_trip(const struct ipvs_op *op, uint8_t *buf, size_t cap, uint16_t fam,
                          uint32_t seq, uint16_t flags)
{
    static const uint8_t cmds[] = { 0, K_IPVS_CMD_NEW_SERVICE, K_IPVS_CMD_SET_SERVICE,
        K_IPVS_CMD_DEL_SERVICE, K_IPVS_CMD_NEW_DEST, K_IPVS_CMD_SET_DEST, K_IPVS_CMD_DEL_DEST };
    struct nlb b = nlb_init(buf, cap);
    int valid = op->op >= IPVS_OP_ADD_SERVICE && op->op <= IPVS_OP_DEL_DEST;
    int svc_full = op->op == IPVS_OP_ADD_SERVICE || op->op == IPVS_OP_UPDATE_SERVICE;
    int has_dest = op->op >= IPVS_OP_ADD_DEST && op->op <= IPVS_OP_DEL_DEST;
    int dest_full = op->op == IPVS_OP_ADD_DEST || op->op == IPVS_OP_UPDATE_DEST;
    int names_ok = terminated(op->svc.sched_name, sizeof(op->svc.sched_name)) &&
                   terminated(op->svc.pe_name, sizeof(op->svc.pe_name));
    const uint8_t *attrs, *nb;
    size_t alen, nlen;
    struct ipvs_service s;
    struct ipvs_dest d;
    int r = nlb_op(&b, fam, seq, flags, op);

    if (!valid || (svc_full && !names_ok)) {
        CHECK(r == -EINVAL && b.len == 0);
        return;
    }
    CHECK(r == 0);
    if (b.full)
        return;                 /* did not fit: the caller sees b.full */
    CHECK(b.len <= cap);
    one_message(buf, b.len, fam, flags, seq, cmds[op->op], &attrs, &alen);
    CHECK(find(attrs, alen, K_IPVS_CMD_ATTR_SERVICE, &nb, &nlen));
    CHECK(nlp_parse_service(nb, nlen, &s) == 0);
    check_service(&op->svc, &s, svc_full);
    if (has_dest) {
        CHECK(find(attrs, alen, K_IPVS_CMD_ATTR_DEST, &nb, &nlen));
        CHECK(nlp_parse_dest(nb, nlen, op->svc.af, &d) == 0);
        check_dest(&op->dest, op->svc.af, &d, dest_full);
    } else {
        CHECK(!find(attrs, alen, K_IPVS_CMD_ATTR_DEST, &nb, &nlen));
    }
}

static void daemon_round_trip(const struct ipvs_daemon *dm, uint8_t *buf, size_t cap)
{
    struct nlb b = nlb_init(buf, cap);
    size_t start = nlb_msg_begin(&b, K_NLMSG_MIN_TYPE, K_NLM_F_REQUEST, 7,
                                 K_IPVS_CMD_NEW_DAEMON, K_IPVS_GENL_VERSION);
    int r = nlb_daemon(&b, dm);
    const uint8_t *attrs, *nb;
    size_t alen, nlen;
    struct ipvs_daemon out;

    if (!terminated(dm->mcast_ifn, sizeof(dm->mcast_ifn))) {
        CHECK(r == -EINVAL);
        return;
    }
    if (dm->mcast_af != 0 && dm->mcast_af != AF_INET && dm->mcast_af != AF_INET6) {
        CHECK(r == -EAFNOSUPPORT);
        return;
    }
    CHECK(r == 0);
    nlb_msg_end(&b, start);
    if (b.full)
        return;
    one_message(buf, b.len, K_NLMSG_MIN_TYPE, K_NLM_F_REQUEST, 7, K_IPVS_CMD_NEW_DAEMON,
                &attrs, &alen);
    CHECK(find(attrs, alen, K_IPVS_CMD_ATTR_DAEMON, &nb, &nlen));
    CHECK(nlp_parse_daemon(nb, nlen, &out) == 0);
    CHECK(out.state == dm->state);
    CHECK(strcmp(out.mcast_ifn, dm->mcast_ifn) == 0);
    CHECK(out.syncid == dm->syncid && out.sync_maxlen == dm->sync_maxlen);
    CHECK(out.mcast_af == dm->mcast_af);
    if (dm->mcast_af == AF_INET)
        CHECK(memcmp(out.mcast_group.bytes, dm->mcast_group.bytes, 4) == 0);
    else if (dm->mcast_af == AF_INET6)
        CHECK(memcmp(out.mcast_group.bytes, dm->mcast_group.bytes, 16) == 0);
    CHECK(out.mcast_port == dm->mcast_port && out.mcast_ttl == dm->mcast_ttl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[4096];
    const uint8_t *p = data;
    size_t left = size;
    uint8_t ctl[4];
    struct ipvs_op op;
    struct ipvs_daemon dm;
    size_t cap;

    take(ctl, sizeof(ctl), &p, &left);
    take(&op, sizeof(op), &p, &left);
    take(&dm, sizeof(dm), &p, &left);
    /* mostly valid ops and families, so the deep checks run often */
    if (!(ctl[0] & 0x80))
        op.op = 1 + ctl[0] % 6;
    if (ctl[1] & 1)
        op.svc.af = (ctl[1] & 2) ? AF_INET6 : AF_INET;
    if (!(ctl[3] & 0x80))
        dm.mcast_af = (uint16_t[]){ 0, AF_INET, AF_INET6 }[ctl[3] % 3];
    /* room: from far too little to plenty */
    cap = ctl[2] == 0xff ? sizeof(buf) : (size_t)ctl[2] * 2;
    op_round_trip(&op, buf, cap, (uint16_t)(K_NLMSG_MIN_TYPE + ctl[1]),
                  (uint32_t)ctl[0] * 2654435761u, K_NLM_F_REQUEST | ((ctl[1] & 4) ? K_NLM_F_ACK : 0));
    daemon_round_trip(&dm, buf, cap);
    return 0;
}
