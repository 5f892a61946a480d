/*
 * nlbatch.c - batches over netlink (nl_batch): many requests packed into
 * few datagrams, acks asked only for the last of each chunk (the kernel
 * answers failures anyway), the error replies collected by sequence number,
 * and the stale-family retry of nlio.c applied to a whole chunk.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "nl_int.h"
#include "uapi.h"

/* How many requests one chunk may hold so that, should every one of them
 * fail, the error replies fit in the socket's receive buffer. */
static size_t chunk_max_msgs(ipvs_handle *h)
{
    int v = 0;
    socklen_t l = sizeof(v);
    size_t m;
    if (getsockopt(h->fd, SOL_SOCKET, SO_RCVBUF, &v, &l) < 0 || v <= 0)
        v = 212992;
    m = (size_t)v / NL_ERR_COST;
    if (m < 1)
        m = 1;
    if (m > NL_CHUNK_MAXMSG)
        m = NL_CHUNK_MAXMSG;
    return m;
}

/* One chunk of a batch in flight: requests idx[0..cnt) of ops, with the
 * sequence numbers seq0 .. seq0 + cnt - 1. */
struct chunk {
    size_t idx[NL_CHUNK_MAXMSG];
    size_t cnt;
    uint32_t seq0;
    int saw_enoent;
};

/* Pack ops from *i on into h->txbuf, at most maxmsgs; an op that cannot be
 * built gets its error and is skipped, one larger than a whole chunk gets
 * -EMSGSIZE. Returns the bytes packed (0: nothing to send); the last
 * request asks for an ack. */
static size_t pack_chunk(ipvs_handle *h, struct ipvs_op *ops, size_t n, size_t *i,
                         size_t maxmsgs, struct chunk *c)
{
    struct nlb b = nlb_init(h->txbuf, h->txcap < NL_TXBUF_SIZE ? h->txcap : NL_TXBUF_SIZE);
    size_t last_start = 0;

    c->cnt = 0;
    c->seq0 = h->seq + 1;
    c->saw_enoent = 0;
    while (*i < n && c->cnt < maxmsgs) {
        size_t save = b.len;
        int r = nlb_op(&b, h->family_id, c->seq0 + (uint32_t)c->cnt, K_NLM_F_REQUEST, &ops[*i]);
        if (r < 0) {
            ops[*i].err = r;            /* never sent */
            (*i)++;
            continue;
        }
        if (b.full) {
            b.len = save;
            b.full = 0;
            break;
        }
        c->idx[c->cnt++] = *i;
        last_start = save;
        (*i)++;
    }
    if (c->cnt == 0) {
        if (*i < n) {                   /* larger than a whole chunk */
            ops[*i].err = -EMSGSIZE;
            (*i)++;
        }
        return 0;
    }
    nlb_set_flags(b.buf + last_start, K_NLM_F_ACK);
    h->seq = c->seq0 + (uint32_t)(c->cnt - 1);
    return b.len;
}

/* The replies of one received datagram: each op's error; *final once the
 * last request's ack came. */
static int collect_datagram(ipvs_handle *h, struct ipvs_op *ops, struct chunk *c,
                            const uint8_t *dg, size_t len, int truncated, int *final)
{
    uint32_t last = c->seq0 + (uint32_t)(c->cnt - 1);
    char msg[IPVS_ERRMSG_MAX];
    size_t off = 0;
    struct nlp_msg m;
    int r;

    if (truncated) {
        /* only a stale dump part can be this long; make sure */
        uint32_t sq;
        if (len < K_NLMSG_HDRLEN)
            return 0;
        memcpy(&sq, dg + offsetof(struct k_nlmsghdr, nlmsg_seq), sizeof(sq));
        if (sq - c->seq0 < c->cnt) {
            ipvs_set_errmsg(h, "oversized netlink reply in a batch");
            return -EMSGSIZE;
        }
        return 0;
    }
    while ((r = nlp_next_msg(dg, len, &off, &m)) > 0) {
        uint32_t k = m.seq - c->seq0;
        int e;
        if (m.type != K_NLMSG_ERROR || m.pid != h->portid || k >= c->cnt)
            continue;
        r = nlp_parse_error(&m, &e, msg, sizeof(msg));
        if (r < 0)
            return r;
        ops[c->idx[k]].err = e;
        if (e == -ENOENT)
            c->saw_enoent = 1;
        if (e && msg[0] && !h->errmsg[0])
            ipvs_set_errmsg(h, "%s", msg);
        if (m.seq == last)
            *final = 1;
    }
    return r;
}

/* Wait for the chunk's replies: the kernel answers only failures, plus the
 * ack of the last request. Ops without an error reply succeeded. */
static int collect_errors(ipvs_handle *h, struct ipvs_op *ops, struct chunk *c)
{
    int final = 0;
    while (!final) {
        size_t lens[NL_MAXSLOTS];
        int trunc[NL_MAXSLOTS];
        int nd = nl_recv_many(h, lens, trunc);

        if (nd < 0)
            return nd;
        for (int d = 0; d < nd; d++) {
            int r = collect_datagram(h, ops, c, h->rxbuf + (size_t)d * NL_SLOT, lens[d],
                                     trunc[d], &final);
            if (r < 0)
                return r;
        }
    }
    for (size_t k = 0; k < c->cnt; k++)
        if (ops[c->idx[k]].err == 1)
            ops[c->idx[k]].err = 0;
    return 0;
}

/* ENOENT in a chunk: IPVS's own, or a stale family id (then the kernel
 * executed none of them)? On a new id, send those again one by one (rare
 * path); when the family is gone, they stay unconfirmed (err 1). */
static int retry_stale_family(ipvs_handle *h, struct ipvs_op *ops, const struct chunk *c)
{
    int f = nl_family_recheck(h);
    if (f != 1 && f != -ENOPROTOOPT)
        return 0;
    for (size_t k = 0; k < c->cnt; k++)
        if (ops[c->idx[k]].err == -ENOENT)
            ops[c->idx[k]].err = 1;
    if (f == -ENOPROTOOPT)
        return f;
    for (size_t k = 0; k < c->cnt; k++) {
        struct ipvs_op *op = &ops[c->idx[k]];
        struct nlb b;
        int r;
        if (op->err != 1)
            continue;
        b = nl_tx_begin(h);
        r = nlb_op(&b, h->family_id, 0, K_NLM_F_REQUEST | K_NLM_F_ACK, op);
        if (r < 0) {
            op->err = r;
            continue;
        }
        r = nl_txn(h, b.len, WAIT_ACK, NULL, NULL);
        if (r == -ETIMEDOUT || r == -ENOBUFS || r == -EBADMSG || r == -ENOPROTOOPT)
            return r;
        op->err = r;
    }
    return 0;
}

int nl_batch(ipvs_handle *h, struct ipvs_op *ops, size_t n)
{
    struct chunk c;             /* 32 KiB of indexes, as before the split */
    size_t maxmsgs = chunk_max_msgs(h);
    size_t i = 0;
    int fam_retried = 0;

    while (i < n) {
        size_t len = pack_chunk(h, ops, n, &i, maxmsgs, &c);
        int r;
        if (len == 0)
            continue;
        r = nl_send(h, h->txbuf, len);
        if (r < 0)
            return r;
        r = collect_errors(h, ops, &c);
        if (r < 0)
            return r;
        if (c.saw_enoent && !fam_retried) {
            fam_retried = 1;
            r = retry_stale_family(h, ops, &c);
            if (r < 0)
                return r;
        }
    }
    return 0;
}
