/*
 * netlink.c - the generic-netlink transport (family "IPVS") of libipvs.
 *
 * Sockets, request building and the request/reply loop; all parsing of what
 * the kernel sends is in nlparse.c. libc only, written from the uapi numbers.
 *
 * Reply matching: every request gets its own sequence number; replies whose
 * sequence or port id do not match (late replies after a timeout, leftovers of
 * an abandoned dump) and datagrams not sent by the kernel are ignored.
 *
 * Stale family id: if the ip_vs module is reloaded, the "IPVS" family may get
 * a new id and the kernel answers ENOENT for the old one - the same errno IPVS
 * itself uses for "destination / scheduler not found". On every ENOENT the
 * family is resolved again: if its id changed, the request (which the kernel
 * did not execute) is sent again with the new id; if the family is gone, the
 * operation fails with ENOPROTOOPT and an explanatory message. Otherwise the
 * ENOENT is IPVS's own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>

#include "alloc.h"
#include "ipvs_int.h"
#include "nlparse.h"
#include "uapi.h"

#ifndef SO_RCVBUFFORCE
#define SO_RCVBUFFORCE 33
#endif

#define NL_RXBUF_SIZE   65536u      /* kernel dump skbs are at most ~32 KiB */
#define NL_TXBUF_SIZE   65536u      /* one batch chunk */
#define NL_RCVBUF_WANT  (8 << 20)   /* room for the error replies of a chunk */
#define NL_SNDBUF_WANT  (1 << 20)   /* sendmsg needs len <= sndbuf - 32 */
/* Receive-buffer memory one error reply (NLMSG_ERROR, capped, maybe with an
 * extack message) is charged in the kernel (skb truesize), rounded up. */
#define NL_ERR_COST     1280u
#define NL_CHUNK_MAXMSG 4096u

#ifdef IPVS_CAPTURE
void (*ipvs_debug_rx_hook)(const void *buf, size_t len);
#endif

enum { WAIT_ACK, WAIT_REPLY, WAIT_DUMP };

/* ------------------------------------------------------------------------ */
/* message building */

struct nlb {
    unsigned char *buf;
    size_t cap;
    size_t len;
    int full;                  /* something did not fit */
};

static void *nlb_reserve(struct nlb *b, size_t n)
{
    size_t an = K_NLA_ALIGN(n);
    void *p;
    if (b->full || an > b->cap - b->len) {
        b->full = 1;
        return NULL;
    }
    p = b->buf + b->len;
    memset(p, 0, an);
    b->len += an;
    return p;
}

static size_t nlb_msg_begin(struct nlb *b, uint16_t type, uint16_t flags,
                            uint32_t seq, uint8_t cmd, uint8_t version)
{
    size_t start = b->len;
    struct k_nlmsghdr nh;
    struct k_genlmsghdr gh;
    unsigned char *p = nlb_reserve(b, sizeof(nh) + sizeof(gh));
    if (!p)
        return start;
    nh.nlmsg_len = 0;
    nh.nlmsg_type = type;
    nh.nlmsg_flags = flags;
    nh.nlmsg_seq = seq;
    nh.nlmsg_pid = 0;
    gh.cmd = cmd;
    gh.version = version;
    gh.reserved = 0;
    memcpy(p, &nh, sizeof(nh));
    memcpy(p + sizeof(nh), &gh, sizeof(gh));
    return start;
}

static void nlb_msg_end(struct nlb *b, size_t start)
{
    uint32_t len = (uint32_t)(b->len - start);
    if (!b->full)
        memcpy(b->buf + start, &len, 4);
}

static void nlb_put(struct nlb *b, uint16_t type, const void *data, size_t len)
{
    unsigned char *p = nlb_reserve(b, K_NLA_HDRLEN + len);
    struct k_nlattr a;
    if (!p)
        return;
    a.nla_len = (uint16_t)(K_NLA_HDRLEN + len);
    a.nla_type = type;
    memcpy(p, &a, sizeof(a));
    if (len)
        memcpy(p + K_NLA_HDRLEN, data, len);
}

static void nlb_u8(struct nlb *b, uint16_t t, uint8_t v) { nlb_put(b, t, &v, 1); }
static void nlb_u16(struct nlb *b, uint16_t t, uint16_t v) { nlb_put(b, t, &v, 2); }
static void nlb_u32(struct nlb *b, uint16_t t, uint32_t v) { nlb_put(b, t, &v, 4); }
static void nlb_be16(struct nlb *b, uint16_t t, uint16_t v)
{
    uint8_t be[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    nlb_put(b, t, be, 2);
}
static void nlb_str(struct nlb *b, uint16_t t, const char *s, size_t n)
{
    /* s has n chars before its NUL; send them with the NUL */
    nlb_put(b, t, s, n + 1);
}

static size_t nlb_nest_begin(struct nlb *b, uint16_t type)
{
    size_t start = b->len;
    nlb_put(b, (uint16_t)(type | K_NLA_F_NESTED), NULL, 0);
    return start;
}

static void nlb_nest_end(struct nlb *b, size_t start)
{
    uint16_t len;
    if (b->full)
        return;
    if (b->len - start > 0xffff) {
        b->full = 1;
        return;
    }
    len = (uint16_t)(b->len - start);
    memcpy(b->buf + start, &len, 2);
}

static void set_msg_flags(unsigned char *msg, uint16_t add)
{
    uint16_t f;
    memcpy(&f, msg + 6, 2);
    f |= add;
    memcpy(msg + 6, &f, 2);
}

static void set_msg_seq_type(unsigned char *msg, uint32_t seq, uint16_t type)
{
    memcpy(msg + 4, &type, 2);
    memcpy(msg + 8, &seq, 4);
}

/* length of a NUL-terminated name in a fixed array, or -1 if unterminated */
static int name_len(const char *s, size_t cap)
{
    const char *nul = memchr(s, 0, cap);
    return nul ? (int)(nul - s) : -1;
}

/* IPVS_CMD_ATTR_SERVICE: the key, plus the settings when full. */
static int put_service(struct nlb *b, const struct ipvs_service *s, int full)
{
    size_t nest = nlb_nest_begin(b, K_IPVS_CMD_ATTR_SERVICE);
    nlb_u16(b, K_IPVS_SVC_ATTR_AF, s->af);
    if (s->fwmark) {
        nlb_u32(b, K_IPVS_SVC_ATTR_FWMARK, s->fwmark);
    } else {
        nlb_u16(b, K_IPVS_SVC_ATTR_PROTOCOL, s->protocol);
        nlb_put(b, K_IPVS_SVC_ATTR_ADDR, s->addr.bytes, 16);
        nlb_be16(b, K_IPVS_SVC_ATTR_PORT, s->port);
    }
    if (full) {
        int sl = name_len(s->sched_name, sizeof(s->sched_name));
        int pl = name_len(s->pe_name, sizeof(s->pe_name));
        uint32_t fl[2];
        if (sl < 0 || pl < 0)
            return -EINVAL;
        nlb_str(b, K_IPVS_SVC_ATTR_SCHED_NAME, s->sched_name, (size_t)sl);
        /* Absent PE_NAME means "no persistence engine": on SET_SERVICE the
         * kernel then removes any engine the service had. */
        if (pl > 0)
            nlb_str(b, K_IPVS_SVC_ATTR_PE_NAME, s->pe_name, (size_t)pl);
        fl[0] = s->flags;
        fl[1] = s->flags_mask ? s->flags_mask : ~0u;
        nlb_put(b, K_IPVS_SVC_ATTR_FLAGS, fl, sizeof(fl));
        nlb_u32(b, K_IPVS_SVC_ATTR_TIMEOUT, s->timeout);
        /* the raw u32: network-order mask (IPv4) or prefix length (IPv6),
         * which is how the kernel stores and compares it */
        nlb_u32(b, K_IPVS_SVC_ATTR_NETMASK, s->netmask);
    }
    nlb_nest_end(b, nest);
    return 0;
}

/* IPVS_CMD_ATTR_DEST: address, port (and family), plus settings when full. */
static void put_dest(struct nlb *b, const struct ipvs_dest *d, int full)
{
    size_t nest = nlb_nest_begin(b, K_IPVS_CMD_ATTR_DEST);
    uint32_t fwd = d->conn_flags & IPVS_FWD_MASK;
    nlb_put(b, K_IPVS_DEST_ATTR_ADDR, d->addr.bytes, 16);
    nlb_be16(b, K_IPVS_DEST_ATTR_PORT, d->port);
    if (d->af)
        nlb_u16(b, K_IPVS_DEST_ATTR_ADDR_FAMILY, d->af);
    if (full) {
        nlb_u32(b, K_IPVS_DEST_ATTR_FWD_METHOD, fwd);
        nlb_u32(b, K_IPVS_DEST_ATTR_WEIGHT, (uint32_t)d->weight);
        nlb_u32(b, K_IPVS_DEST_ATTR_U_THRESH, d->u_threshold);
        nlb_u32(b, K_IPVS_DEST_ATTR_L_THRESH, d->l_threshold);
        if (fwd == IPVS_FWD_TUNNEL) {
            /* only for tunnels, so kernels before 5.2 work for the rest */
            nlb_u8(b, K_IPVS_DEST_ATTR_TUN_TYPE, d->tun_type);
            nlb_be16(b, K_IPVS_DEST_ATTR_TUN_PORT, d->tun_port);
            nlb_u16(b, K_IPVS_DEST_ATTR_TUN_FLAGS, d->tun_flags);
        }
    }
    nlb_nest_end(b, nest);
}

/* One service/destination operation as a message. -EINVAL for a bad op. */
static int build_op(struct nlb *b, uint16_t fam, uint32_t seq, uint16_t flags,
                    const struct ipvs_op *op)
{
    uint8_t cmd;
    int svc_full = 0, has_dest = 0, dest_full = 0, r;
    size_t start;

    switch (op->op) {
    case IPVS_OP_ADD_SERVICE:    cmd = K_IPVS_CMD_NEW_SERVICE; svc_full = 1; break;
    case IPVS_OP_UPDATE_SERVICE: cmd = K_IPVS_CMD_SET_SERVICE; svc_full = 1; break;
    case IPVS_OP_DEL_SERVICE:    cmd = K_IPVS_CMD_DEL_SERVICE; break;
    case IPVS_OP_ADD_DEST:       cmd = K_IPVS_CMD_NEW_DEST; has_dest = dest_full = 1; break;
    case IPVS_OP_UPDATE_DEST:    cmd = K_IPVS_CMD_SET_DEST; has_dest = dest_full = 1; break;
    case IPVS_OP_DEL_DEST:       cmd = K_IPVS_CMD_DEL_DEST; has_dest = 1; break;
    default: return -EINVAL;
    }
    start = nlb_msg_begin(b, fam, flags, seq, cmd, K_IPVS_GENL_VERSION);
    r = put_service(b, &op->svc, svc_full);
    if (r < 0) {
        b->len = start;
        return r;
    }
    if (has_dest)
        put_dest(b, &op->dest, dest_full);
    nlb_msg_end(b, start);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* socket I/O */

static int nl_send(ipvs_handle *h, const void *buf, size_t len)
{
    /* no address: an unconnected netlink socket sends to the kernel (port 0);
     * this also lets tests put a socketpair in the socket's place */
    for (;;) {
        ssize_t r = send(h->fd, buf, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        return (size_t)r == len ? 0 : -EIO;
    }
}

/* A signal interrupted a wait: ask the interrupt check (if any) whether to
 * abandon the call (-EINTR) or go on waiting. */
static int nl_interrupted(ipvs_handle *h)
{
    return h->intr_cb && h->intr_cb(h->intr_arg) != 0;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    /* whole nanoseconds first: truncating a negative nsec difference on its
     * own would round the elapsed time UP and time out up to 1 ms early */
    return (long)(((long long)(t.tv_sec - t0->tv_sec) * 1000000000LL +
                   (t.tv_nsec - t0->tv_nsec)) / 1000000);
}

/* Wait until h->fd is readable or the deadline t0 + to ms has passed:
 * 0, -ETIMEDOUT, -EINTR (interrupt check said stop) or -errno. The clock,
 * not poll's return, decides the timeout: poll may wake a little early. */
static int wait_readable(ipvs_handle *h, const struct timespec *t0, int to)
{
    for (;;) {
        struct pollfd p = { h->fd, POLLIN, 0 };
        long left = to - elapsed_ms(t0);
        int pr;
        if (left <= 0)
            return -ETIMEDOUT;
        pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR) {
            if (nl_interrupted(h))
                return -EINTR;
            continue;
        }
        if (pr < 0)
            return -errno;
        if (pr > 0)
            return 0;
        /* pr == 0: loop to re-measure; returns once the time is really up */
    }
}

/* After a receive failed with errno: 1 = receive again (EINTR, or the
 * socket became readable in time), else the -errno to return. */
static int recv_failed(ipvs_handle *h, const struct timespec *t0, int to)
{
    int e = errno;
    if (e == EINTR)
        return nl_interrupted(h) ? -EINTR : 1;
    if ((e == EAGAIN || e == EWOULDBLOCK) && to > 0) {
        int w = wait_readable(h, t0, to);
        return w < 0 ? w : 1;
    }
    return -e;
}

/* Receive one datagram from the kernel; *data points at it (inside
 * h->rxbuf), the return value is its length or -errno; -ETIMEDOUT when
 * nothing arrives within h->timeout_ms (> 0).
 * One recvmmsg takes up to two datagrams, into the two halves of h->rxbuf
 * (each half holds the largest datagram the kernel sends, ~32 KiB): a dump's
 * NLMSG_DONE comes in a datagram of its own, queued while we read the data,
 * so this saves one syscall per dump. The second waits in h->rx_pending for
 * the next call; callers are done with a datagram before asking again. */
static ssize_t nl_recv(ipvs_handle *h, unsigned char **data)
{
    struct timespec t0;
    int to = h->timeout_ms;

    if (h->rx_pending) {
        ssize_t len = (ssize_t)h->rx_pending;
        h->rx_pending = 0;
        *data = h->rxbuf + h->rxcap / 2;
        return len;
    }
    if (to > 0)
        clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        size_t half = h->rxcap / 2;
        struct sockaddr_nl src[2];
        struct iovec iov[2] = { { h->rxbuf, half }, { h->rxbuf + half, half } };
        struct mmsghdr mm[2];
        int r, i, got = 0;
        size_t lens[2] = { 0, 0 };

        memset(mm, 0, sizeof(mm));
        memset(src, 0, sizeof(src));
        for (i = 0; i < 2; i++) {
            mm[i].msg_hdr.msg_name = &src[i];
            mm[i].msg_hdr.msg_namelen = sizeof(src[i]);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        /* With a timeout: try without blocking first (a reply is usually
         * queued already: the kernel answers during our sendmsg/recvmsg),
         * poll only when nothing is there. */
        r = recvmmsg(h->fd, mm, 2, to > 0 ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
        if (r < 0) {
            int f = recv_failed(h, &t0, to);
            if (f < 0)
                return f;
            continue;
        }
        for (i = 0; i < r; i++) {
            if (mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
                /* cannot happen with the kernel's message sizes; make room
                 * for next time, this datagram is lost */
                size_t ncap = h->rxcap * 2;
                unsigned char *nb = ipvs_realloc(h->rxbuf, ncap);
                if (nb) {
                    h->rxbuf = nb;
                    h->rxcap = ncap;
                }
                ipvs_set_errmsg(h, "netlink reply larger than the receive buffer");
                return -EMSGSIZE;
            }
            if (mm[i].msg_hdr.msg_namelen < sizeof(src[i]) || src[i].nl_family != AF_NETLINK
                || src[i].nl_pid != 0)
                continue;   /* not from the kernel */
#ifdef IPVS_CAPTURE
            if (ipvs_debug_rx_hook)
                ipvs_debug_rx_hook(iov[i].iov_base, mm[i].msg_len);
#endif
            lens[i] = mm[i].msg_len;
            got++;
        }
        if (!got)
            continue;
        if (lens[0]) {
            h->rx_pending = lens[1];
            *data = h->rxbuf;
            return (ssize_t)lens[0];
        }
        *data = h->rxbuf + half;     /* only the second was the kernel's */
        return (ssize_t)lens[1];
    }
}

/* Batch replies: receive up to nslots datagrams at once into NL_SLOT-byte
 * slots of h->rxbuf (error replies are small; a longer datagram is
 * truncated, which only matters if it is one of ours). Waits like nl_recv for
 * the first one. Returns the number received or -errno; lens[i] = length,
 * trunc[i] = truncated, or lens[i] = 0 for a datagram not from the kernel. */
#define NL_SLOT 2048u
#define NL_MAXSLOTS 64u
static int nl_recv_many(ipvs_handle *h, size_t *lens, int *trunc)
{
    struct mmsghdr mm[NL_MAXSLOTS];
    struct iovec iov[NL_MAXSLOTS];
    struct sockaddr_nl src[NL_MAXSLOTS];
    unsigned nslots = (unsigned)(h->rxcap / NL_SLOT);
    struct timespec t0;
    int to = h->timeout_ms;

    h->rx_pending = 0;   /* rxbuf is reused: a waiting datagram would be stale */

    if (nslots > NL_MAXSLOTS)
        nslots = NL_MAXSLOTS;
    if (to > 0)
        clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int r;
        memset(mm, 0, sizeof(mm[0]) * nslots);
        for (unsigned i = 0; i < nslots; i++) {
            iov[i].iov_base = h->rxbuf + (size_t)i * NL_SLOT;
            iov[i].iov_len = NL_SLOT;
            mm[i].msg_hdr.msg_name = &src[i];
            mm[i].msg_hdr.msg_namelen = sizeof(src[i]);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        r = recvmmsg(h->fd, mm, nslots, to > 0 ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
        if (r < 0) {
            int f = recv_failed(h, &t0, to);
            if (f < 0)
                return f;
            continue;
        }
        for (int i = 0; i < r; i++) {
            const struct msghdr *mh = &mm[i].msg_hdr;
            int from_kernel = mh->msg_namelen >= sizeof(src[i]) &&
                              src[i].nl_family == AF_NETLINK && src[i].nl_pid == 0;
            lens[i] = from_kernel ? mm[i].msg_len : 0;
            trunc[i] = (mh->msg_flags & MSG_TRUNC) != 0;
            if (lens[i] > NL_SLOT)
                lens[i] = NL_SLOT;
#ifdef IPVS_CAPTURE
            if (ipvs_debug_rx_hook && lens[i] && !trunc[i])
                ipvs_debug_rx_hook(h->rxbuf + (size_t)i * NL_SLOT, lens[i]);
#endif
        }
        return r;
    }
}

/* Discard everything queued (finishing an abandoned dump: each recv lets the
 * kernel queue the dump's next part). */
static void nl_drain(ipvs_handle *h)
{
    h->rx_pending = 0;
    for (int i = 0; i < 1000000; i++) {
        ssize_t r = recv(h->fd, h->rxbuf, h->rxcap, MSG_DONTWAIT | MSG_TRUNC);
        if (r < 0 && errno != EINTR && errno != ENOBUFS)
            break;
    }
}

typedef int (*nl_cb)(void *ctx, const struct nlp_msg *m);

/* Read the replies to request seq until it completes: WAIT_ACK ends at the
 * NLMSG_ERROR (ack), WAIT_REPLY at the first data message or an error,
 * WAIT_DUMP at NLMSG_DONE or an error. Data messages go to cb. A callback
 * failure is remembered and returned once the request is complete. */
static int nl_wait(ipvs_handle *h, uint32_t seq, int mode, nl_cb cb, void *ctx,
                   size_t *ndata)
{
    int cb_err = 0;
    char msg[IPVS_ERRMSG_MAX];

    *ndata = 0;
    for (;;) {
        unsigned char *data;
        ssize_t n = nl_recv(h, &data);
        size_t off = 0;
        struct nlp_msg m;
        int r;

        if (n < 0)
            return (int)n;
        while ((r = nlp_next_msg(data, (size_t)n, &off, &m)) > 0) {
            if (m.seq != seq || m.pid != h->portid)
                continue;                       /* stale or not ours */
            if (m.type == K_NLMSG_NOOP)
                continue;
            if (m.type == K_NLMSG_OVERRUN)
                return -ENOBUFS;
            if (m.type == K_NLMSG_ERROR || m.type == K_NLMSG_DONE) {
                int e;
                r = nlp_parse_error(&m, &e, msg, sizeof(msg));
                if (r < 0)
                    return r;
                if (msg[0])
                    ipvs_set_errmsg(h, "%s", msg);
                return e ? e : cb_err;
            }
            if (m.type < K_NLMSG_MIN_TYPE)
                continue;
            (*ndata)++;
            if (cb && !cb_err)
                cb_err = cb(ctx, &m);
            if (mode == WAIT_REPLY)
                return cb_err;
        }
        if (r < 0)
            return r;
    }
}

static int resolve_family(ipvs_handle *h, uint16_t *id);

static int family_cb(void *ctx, const struct nlp_msg *m)
{
    return nlp_parse_family_msg(m, (uint16_t *)ctx);
}

#ifdef IPVS_TEST_HOOKS
/* Test builds only (-DIPVS_TEST_HOOKS, `make test-hooks`): the environment
 * variable IPVS_TEST_NETLINK_FAMILY names the genetlink family to resolve
 * instead of "IPVS" (1..15 characters; anything else is ignored), so a test
 * can make the family look missing (e.g. "IPVS_NOPE") and exercise the AUTO
 * -> sockopt fallback while ip_vs is loaded (tests/kernel/test_fallback.py).
 * Release builds have no such switch. */
static const char *ipvs_family_name(void)
{
    const char *name = getenv("IPVS_TEST_NETLINK_FAMILY");
    if (name && name[0] != '\0' && strlen(name) < 16)
        return name;
    return K_IPVS_GENL_NAME;
}
#else
static const char *ipvs_family_name(void) { return K_IPVS_GENL_NAME; }
#endif

static int resolve_family(ipvs_handle *h, uint16_t *id)
{
    unsigned char buf[128];
    struct nlb b = { buf, sizeof(buf), 0, 0 };
    uint32_t seq = ++h->seq;
    size_t start, nd;
    const char *name = ipvs_family_name();
    int r;

    start = nlb_msg_begin(&b, K_GENL_ID_CTRL, K_NLM_F_REQUEST, seq, K_CTRL_CMD_GETFAMILY, 1);
    nlb_str(&b, K_CTRL_ATTR_FAMILY_NAME, name, strlen(name));
    nlb_msg_end(&b, start);
    r = nl_send(h, buf, b.len);
    if (r < 0)
        return r;
    return nl_wait(h, seq, WAIT_REPLY, family_cb, id, &nd);
}

/* After an ENOENT: 1 = the family id changed (h->family_id updated),
 * 0 = unchanged, -ENOPROTOOPT = the family is gone, other < 0: unknown. */
static int family_recheck(ipvs_handle *h)
{
    uint16_t id = 0;
    char saved[IPVS_ERRMSG_MAX];
    int r;

    memcpy(saved, h->errmsg, sizeof(saved));
    r = resolve_family(h, &id);
    memcpy(h->errmsg, saved, sizeof(saved));
    if (r == -ENOENT) {
        ipvs_set_errmsg(h, "the IPVS generic netlink family is no longer registered "
                        "(was the ip_vs module unloaded?)");
        return -ENOPROTOOPT;
    }
    if (r < 0)
        return r;
    if (id != h->family_id) {
        h->family_id = id;
        return 1;
    }
    return 0;
}

/* Send the one request in h->txbuf[0..len) (a fresh seq is stamped in) and
 * wait for its completion. Handles a busy dump left by an abandoned request
 * and a stale family id. */
static int nl_txn(ipvs_handle *h, size_t len, int mode, nl_cb cb, void *ctx)
{
    int busy_tries = 0, fam_tried = 0;
    for (;;) {
        uint32_t seq = ++h->seq;
        size_t nd;
        int r;

        set_msg_seq_type(h->txbuf, seq, h->family_id);
        r = nl_send(h, h->txbuf, len);
        if (r < 0)
            return r;
        r = nl_wait(h, seq, mode, cb, ctx, &nd);
        if (r == -EBUSY && mode == WAIT_DUMP && nd == 0 && busy_tries < 3) {
            /* a dump of an earlier, abandoned request still runs */
            busy_tries++;
            nl_drain(h);
            h->errmsg[0] = '\0';
            continue;
        }
        if (r == -ENOENT && nd == 0 && !fam_tried) {
            int f;
            fam_tried = 1;
            f = family_recheck(h);
            if (f == 1)
                continue;
            if (f == -ENOPROTOOPT)
                return f;
        }
        return r;
    }
}

/* Start a request in h->txbuf. */
static struct nlb tx_begin(ipvs_handle *h)
{
    struct nlb b = { h->txbuf, h->txcap, 0, 0 };
    return b;
}

static int simple_cmd(ipvs_handle *h, uint8_t cmd, const struct ipvs_service *svc)
{
    struct nlb b = tx_begin(h);
    size_t start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_ACK, 0, cmd,
                                 K_IPVS_GENL_VERSION);
    if (svc)
        put_service(&b, svc, 0);
    nlb_msg_end(&b, start);
    if (b.full)
        return -EMSGSIZE;
    return nl_txn(h, b.len, WAIT_ACK, NULL, NULL);
}

static int do_op(ipvs_handle *h, int opcode, const struct ipvs_service *svc,
                 const struct ipvs_dest *d)
{
    struct ipvs_op op;
    struct nlb b = tx_begin(h);
    int r;

    memset(&op, 0, sizeof(op));
    op.op = opcode;
    op.svc = *svc;
    if (d)
        op.dest = *d;
    r = build_op(&b, h->family_id, 0, K_NLM_F_REQUEST | K_NLM_F_ACK, &op);
    if (r < 0)
        return r;
    if (b.full)
        return -EMSGSIZE;
    return nl_txn(h, b.len, WAIT_ACK, NULL, NULL);
}

/* ------------------------------------------------------------------------ */
/* transport interface */

int nl_open(ipvs_handle *h)
{
    struct sockaddr_nl sa;
    socklen_t sl = sizeof(sa);
    int one = 1, v, r;

    h->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, K_NETLINK_GENERIC);
    if (h->fd < 0)
        return -errno;
    /* both are optional: older kernels lack them */
    (void)setsockopt(h->fd, K_SOL_NETLINK, K_NETLINK_EXT_ACK, &one, sizeof(one));
    (void)setsockopt(h->fd, K_SOL_NETLINK, K_NETLINK_CAP_ACK, &one, sizeof(one));
    v = NL_SNDBUF_WANT;
    (void)setsockopt(h->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    v = NL_RCVBUF_WANT;
    if (setsockopt(h->fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) < 0)
        (void)setsockopt(h->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));

    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    if (bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    if (getsockname(h->fd, (struct sockaddr *)&sa, &sl) < 0)
        return -errno;
    h->portid = sa.nl_pid;

    if (!h->rxbuf) {
        h->rxbuf = ipvs_malloc(NL_RXBUF_SIZE);
        if (!h->rxbuf)
            return -ENOMEM;
        h->rxcap = NL_RXBUF_SIZE;
    }
    if (!h->txbuf) {
        h->txbuf = ipvs_malloc(NL_TXBUF_SIZE);
        if (!h->txbuf)
            return -ENOMEM;
        h->txcap = NL_TXBUF_SIZE;
    }
    {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        h->seq = (uint32_t)t.tv_nsec ^ ((uint32_t)getpid() << 12);
    }

    r = resolve_family(h, &h->family_id);
    if (r == -ENOENT)
        ipvs_set_errmsg(h, "the IPVS generic netlink family is not registered "
                        "(is the ip_vs module loaded?)");
    return r;
}

void nl_close(ipvs_handle *h)
{
    (void)h;   /* libipvs.c closes h->fd and frees the buffers */
}

static int info_cb(void *ctx, const struct nlp_msg *m)
{
    return nlp_parse_info_msg(m, ctx);
}

static int get_cmd(ipvs_handle *h, uint8_t cmd, nl_cb cb, void *ctx)
{
    struct nlb b = tx_begin(h);
    size_t start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST, 0, cmd,
                                 K_IPVS_GENL_VERSION);
    nlb_msg_end(&b, start);
    return nl_txn(h, b.len, WAIT_REPLY, cb, ctx);
}

int nl_get_info(ipvs_handle *h, struct ipvs_info *out)
{
    memset(out, 0, sizeof(*out));
    return get_cmd(h, K_IPVS_CMD_GET_INFO, info_cb, out);
}

int nl_add_service(ipvs_handle *h, const struct ipvs_service *svc)
{
    return do_op(h, IPVS_OP_ADD_SERVICE, svc, NULL);
}

int nl_update_service(ipvs_handle *h, const struct ipvs_service *svc)
{
    return do_op(h, IPVS_OP_UPDATE_SERVICE, svc, NULL);
}

int nl_del_service(ipvs_handle *h, const struct ipvs_service *svc)
{
    return do_op(h, IPVS_OP_DEL_SERVICE, svc, NULL);
}

struct svc_one { struct ipvs_service *out; int got; };

static int svc_one_cb(void *ctx, const struct nlp_msg *m)
{
    struct svc_one *c = ctx;
    int r = nlp_parse_service_msg(m, c->out);
    if (r == 0)
        c->got = 1;
    return r;
}

int nl_get_service(ipvs_handle *h, const struct ipvs_service *key, struct ipvs_service *out)
{
    struct nlb b = tx_begin(h);
    struct svc_one c = { out, 0 };
    size_t start;
    int r;

    start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST, 0, K_IPVS_CMD_GET_SERVICE,
                          K_IPVS_GENL_VERSION);
    put_service(&b, key, 0);
    nlb_msg_end(&b, start);
    if (b.full)
        return -EMSGSIZE;
    r = nl_txn(h, b.len, WAIT_REPLY, svc_one_cb, &c);
    if (r == 0 && !c.got)
        r = -EBADMSG;
    return r;
}

struct svc_list { struct ipvs_service *arr; size_t n, cap; };

static int svc_list_cb(void *ctx, const struct nlp_msg *m)
{
    struct svc_list *l = ctx;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        struct ipvs_service *na = ipvs_realloc(l->arr, ncap * sizeof(*na));
        if (!na)
            return -ENOMEM;
        l->arr = na;
        l->cap = ncap;
    }
    int r = nlp_parse_service_msg(m, &l->arr[l->n]);
    if (r == 0)
        l->n++;
    return r;
}

int nl_get_services(ipvs_handle *h, struct ipvs_service **out, size_t *n)
{
    struct nlb b = tx_begin(h);
    struct svc_list l = { NULL, 0, 0 };
    size_t start;
    int r;

    *out = NULL;
    *n = 0;
    start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_DUMP, 0,
                          K_IPVS_CMD_GET_SERVICE, K_IPVS_GENL_VERSION);
    nlb_msg_end(&b, start);
    r = nl_txn(h, b.len, WAIT_DUMP, svc_list_cb, &l);
    if (r < 0) {
        ipvs_xfree(l.arr);
        return r;
    }
    *out = l.arr;
    *n = l.n;
    return 0;
}

int nl_add_dest(ipvs_handle *h, const struct ipvs_service *svc, const struct ipvs_dest *d)
{
    return do_op(h, IPVS_OP_ADD_DEST, svc, d);
}

int nl_update_dest(ipvs_handle *h, const struct ipvs_service *svc, const struct ipvs_dest *d)
{
    return do_op(h, IPVS_OP_UPDATE_DEST, svc, d);
}

int nl_del_dest(ipvs_handle *h, const struct ipvs_service *svc, const struct ipvs_dest *d)
{
    return do_op(h, IPVS_OP_DEL_DEST, svc, d);
}

struct dest_list { struct ipvs_dest *arr; size_t n, cap; uint16_t svc_af; };

static int dest_list_cb(void *ctx, const struct nlp_msg *m)
{
    struct dest_list *l = ctx;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        struct ipvs_dest *na = ipvs_realloc(l->arr, ncap * sizeof(*na));
        if (!na)
            return -ENOMEM;
        l->arr = na;
        l->cap = ncap;
    }
    int r = nlp_parse_dest_msg(m, l->svc_af, &l->arr[l->n]);
    if (r == 0)
        l->n++;
    return r;
}

int nl_get_dests(ipvs_handle *h, const struct ipvs_service *svc, struct ipvs_dest **out, size_t *n)
{
    struct nlb b = tx_begin(h);
    struct dest_list l = { NULL, 0, 0, svc->af };
    size_t start;
    int r;

    *out = NULL;
    *n = 0;
    start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_DUMP, 0,
                          K_IPVS_CMD_GET_DEST, K_IPVS_GENL_VERSION);
    put_service(&b, svc, 0);
    nlb_msg_end(&b, start);
    if (b.full)
        return -EMSGSIZE;
    r = nl_txn(h, b.len, WAIT_DUMP, dest_list_cb, &l);
    if (r < 0) {
        ipvs_xfree(l.arr);
        return r;
    }
    *out = l.arr;
    *n = l.n;
    return 0;
}

int nl_flush(ipvs_handle *h)
{
    return simple_cmd(h, K_IPVS_CMD_FLUSH, NULL);
}

int nl_zero(ipvs_handle *h, const struct ipvs_service *svc)
{
    return simple_cmd(h, K_IPVS_CMD_ZERO, svc);
}

static int config_cb(void *ctx, const struct nlp_msg *m)
{
    return nlp_parse_config_msg(m, ctx);
}

int nl_get_timeouts(ipvs_handle *h, struct ipvs_timeouts *out)
{
    memset(out, 0, sizeof(*out));
    return get_cmd(h, K_IPVS_CMD_GET_CONFIG, config_cb, out);
}

int nl_set_timeouts(ipvs_handle *h, const struct ipvs_timeouts *to)
{
    struct nlb b = tx_begin(h);
    size_t start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_ACK, 0,
                                 K_IPVS_CMD_SET_CONFIG, K_IPVS_GENL_VERSION);
    /* 0 = leave as is: the kernel keeps values whose attribute is absent */
    if (to->tcp)
        nlb_u32(&b, K_IPVS_CMD_ATTR_TIMEOUT_TCP, to->tcp);
    if (to->tcp_fin)
        nlb_u32(&b, K_IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, to->tcp_fin);
    if (to->udp)
        nlb_u32(&b, K_IPVS_CMD_ATTR_TIMEOUT_UDP, to->udp);
    nlb_msg_end(&b, start);
    return nl_txn(h, b.len, WAIT_ACK, NULL, NULL);
}

struct daemon_list { struct ipvs_daemon *out; size_t n; };

static int daemon_cb(void *ctx, const struct nlp_msg *m)
{
    struct daemon_list *l = ctx;
    struct ipvs_daemon d;
    int r = nlp_parse_daemon_msg(m, &d);
    if (r < 0)
        return r;
    if (l->n < 2)
        l->out[l->n++] = d;
    return 0;
}

int nl_get_daemons(ipvs_handle *h, struct ipvs_daemon *out, size_t *n)
{
    struct nlb b = tx_begin(h);
    struct daemon_list l = { out, 0 };
    size_t start;
    int r;

    *n = 0;
    memset(out, 0, 2 * sizeof(*out));
    start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_DUMP, 0,
                          K_IPVS_CMD_GET_DAEMON, K_IPVS_GENL_VERSION);
    nlb_msg_end(&b, start);
    r = nl_txn(h, b.len, WAIT_DUMP, daemon_cb, &l);
    if (r < 0)
        return r;
    *n = l.n;
    return 0;
}

int nl_start_daemon(ipvs_handle *h, const struct ipvs_daemon *d)
{
    struct nlb b = tx_begin(h);
    int il = name_len(d->mcast_ifn, sizeof(d->mcast_ifn));
    size_t start, nest;

    if (il < 0)
        return -EINVAL;
    start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_ACK, 0,
                          K_IPVS_CMD_NEW_DAEMON, K_IPVS_GENL_VERSION);
    nest = nlb_nest_begin(&b, K_IPVS_CMD_ATTR_DAEMON);
    nlb_u32(&b, K_IPVS_DAEMON_ATTR_STATE, (uint32_t)d->state);
    nlb_str(&b, K_IPVS_DAEMON_ATTR_MCAST_IFN, d->mcast_ifn, (size_t)il);
    nlb_u32(&b, K_IPVS_DAEMON_ATTR_SYNC_ID, d->syncid);
    /* the optional ones only when given: older kernels lack them */
    if (d->sync_maxlen)
        nlb_u16(&b, K_IPVS_DAEMON_ATTR_SYNC_MAXLEN, d->sync_maxlen);
    if (d->mcast_af == AF_INET)
        nlb_put(&b, K_IPVS_DAEMON_ATTR_MCAST_GROUP, d->mcast_group.bytes, 4);
    else if (d->mcast_af == AF_INET6)
        nlb_put(&b, K_IPVS_DAEMON_ATTR_MCAST_GROUP6, d->mcast_group.bytes, 16);
    else if (d->mcast_af != 0)
        return -EAFNOSUPPORT;
    /* NB: host byte order, unlike the other ports (the kernel uses
     * nla_get_u16/nla_put_u16 for it) */
    if (d->mcast_port)
        nlb_u16(&b, K_IPVS_DAEMON_ATTR_MCAST_PORT, d->mcast_port);
    if (d->mcast_ttl)
        nlb_u8(&b, K_IPVS_DAEMON_ATTR_MCAST_TTL, d->mcast_ttl);
    nlb_nest_end(&b, nest);
    nlb_msg_end(&b, start);
    return nl_txn(h, b.len, WAIT_ACK, NULL, NULL);
}

int nl_stop_daemon(ipvs_handle *h, int state)
{
    struct nlb b = tx_begin(h);
    size_t start, nest, probe;
    uint32_t seq;
    int r, ack = 0;

    start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_ACK, 0,
                          K_IPVS_CMD_DEL_DAEMON, K_IPVS_GENL_VERSION);
    nest = nlb_nest_begin(&b, K_IPVS_CMD_ATTR_DAEMON);
    nlb_u32(&b, K_IPVS_DAEMON_ATTR_STATE, (uint32_t)state);
    nlb_nest_end(&b, nest);
    nlb_msg_end(&b, start);
    /* The kernel passes on kthread_stop()'s result: -EINTR when the sync
     * thread had not run yet (stop right after start). The daemon is stopped
     * all the same, but netlink_rcv_skb() sends NO ack at all for -EINTR, so
     * waiting for one would time out. A GET_INFO goes in the same datagram:
     * the kernel handles both in order inside our send, so its reply without
     * an ack before it means -EINTR = stopped (as so_stop_daemon reports). */
    probe = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST, 0,
                          K_IPVS_CMD_GET_INFO, K_IPVS_GENL_VERSION);
    nlb_msg_end(&b, probe);
    if (b.full)
        return -EMSGSIZE;
    seq = ++h->seq;
    set_msg_seq_type(b.buf + start, seq, h->family_id);
    set_msg_seq_type(b.buf + probe, ++h->seq, h->family_id);
    r = nl_send(h, b.buf, b.len);
    if (r < 0)
        return r;
    for (;;) {
        unsigned char *data;
        ssize_t n = nl_recv(h, &data);
        size_t off = 0;
        struct nlp_msg m;

        if (n < 0)
            return (int)n;
        while ((r = nlp_next_msg(data, (size_t)n, &off, &m)) > 0) {
            if (m.pid != h->portid)
                continue;
            if (m.seq == seq && m.type == K_NLMSG_ERROR) {
                char msg[IPVS_ERRMSG_MAX];
                r = nlp_parse_error(&m, &ack, msg, sizeof(msg));
                if (r < 0)
                    return r;
                if (msg[0])
                    ipvs_set_errmsg(h, "%s", msg);
            } else if (m.seq == seq + 1) {
                return ack;     /* the probe's answer: the stop is complete */
            }
        }
        if (r < 0)
            return r;
    }
}

/* ------------------------------------------------------------------------ */
/* batches */

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

/* After a family id change: send each op of the chunk still at err == 1 on
 * its own. */
static int resend_unknown(ipvs_handle *h, struct ipvs_op *ops, const size_t *idx, size_t cnt)
{
    for (size_t k = 0; k < cnt; k++) {
        struct ipvs_op *op = &ops[idx[k]];
        struct nlb b;
        int r;
        if (op->err != 1)
            continue;
        b = tx_begin(h);
        r = build_op(&b, h->family_id, 0, K_NLM_F_REQUEST | K_NLM_F_ACK, op);
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
    static const size_t chunk_bytes = NL_TXBUF_SIZE;
    size_t idx[NL_CHUNK_MAXMSG];
    size_t maxmsgs = chunk_max_msgs(h);
    size_t i = 0;
    int fam_retried = 0;
    char msg[IPVS_ERRMSG_MAX];

    while (i < n) {
        struct nlb b = { h->txbuf, h->txcap < chunk_bytes ? h->txcap : chunk_bytes, 0, 0 };
        uint32_t seq0 = h->seq + 1, last;
        size_t cnt = 0, last_start = 0;
        int got_final = 0, saw_enoent = 0, r;

        /* pack */
        while (i < n && cnt < maxmsgs) {
            size_t save = b.len;
            r = build_op(&b, h->family_id, seq0 + (uint32_t)cnt, K_NLM_F_REQUEST, &ops[i]);
            if (r < 0) {
                ops[i].err = r;         /* never sent */
                i++;
                continue;
            }
            if (b.full) {
                b.len = save;
                b.full = 0;
                break;
            }
            idx[cnt++] = i;
            last_start = save;
            i++;
        }
        if (cnt == 0) {
            if (i < n) {                /* larger than a whole chunk */
                ops[i].err = -EMSGSIZE;
                i++;
            }
            continue;
        }
        set_msg_flags(b.buf + last_start, K_NLM_F_ACK);
        last = seq0 + (uint32_t)(cnt - 1);
        h->seq = last;

        r = nl_send(h, b.buf, b.len);
        if (r < 0)
            return r;

        /* The kernel answers only failures, plus the ack of the last one. */
        while (!got_final) {
            size_t lens[NL_MAXSLOTS];
            int trunc[NL_MAXSLOTS];
            int nd = nl_recv_many(h, lens, trunc);

            if (nd < 0)
                return nd;
            for (int d = 0; d < nd; d++) {
                const uint8_t *dg = h->rxbuf + (size_t)d * NL_SLOT;
                size_t off = 0;
                struct nlp_msg m;

                if (trunc[d]) {
                    /* only a stale dump part can be this long; make sure */
                    uint32_t sq;
                    if (lens[d] < K_NLMSG_HDRLEN)
                        continue;
                    memcpy(&sq, dg + 8, 4);
                    if (sq - seq0 < cnt) {
                        ipvs_set_errmsg(h, "oversized netlink reply in a batch");
                        return -EMSGSIZE;
                    }
                    continue;
                }
                while ((r = nlp_next_msg(dg, lens[d], &off, &m)) > 0) {
                    uint32_t k = m.seq - seq0;
                    int e;
                    if (m.type != K_NLMSG_ERROR || m.pid != h->portid || k >= cnt)
                        continue;
                    r = nlp_parse_error(&m, &e, msg, sizeof(msg));
                    if (r < 0)
                        return r;
                    ops[idx[k]].err = e;
                    if (e == -ENOENT)
                        saw_enoent = 1;
                    if (e && msg[0] && !h->errmsg[0])
                        ipvs_set_errmsg(h, "%s", msg);
                    if (m.seq == last)
                        got_final = 1;
                }
                if (r < 0)
                    return r;
            }
        }
        for (size_t k = 0; k < cnt; k++)
            if (ops[idx[k]].err == 1)
                ops[idx[k]].err = 0;

        if (saw_enoent && !fam_retried) {
            /* IPVS's own ENOENT, or a stale family id (none executed)? */
            int f;
            fam_retried = 1;
            f = family_recheck(h);
            if (f == 1 || f == -ENOPROTOOPT) {
                for (size_t k = 0; k < cnt; k++)
                    if (ops[idx[k]].err == -ENOENT)
                        ops[idx[k]].err = 1;
                if (f == -ENOPROTOOPT)
                    return f;
                /* new id: the kernel executed none of the ENOENT ones; send
                 * them again one by one (rare path) */
                r = resend_unknown(h, ops, idx, cnt);
                if (r < 0)
                    return r;
            }
        }
    }
    return 0;
}
