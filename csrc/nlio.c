/*
 * nlio.c - the netlink transport's request/reply engine: sending, receiving
 * (with the handle's timeout and interrupt check), matching replies to
 * requests, and the "IPVS" family id.
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
#include "nl_int.h"
#include "uapi.h"

int nl_send(ipvs_handle *h, const void *buf, size_t len)
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

/* The one receive: up to n (<= NL_MAXSLOTS) datagrams in one recvmmsg, into
 * n slots of slot bytes at h->rxbuf. Waits for the first until the deadline
 * t0 + h->timeout_ms (> 0; else forever). With a timeout it tries without
 * blocking first (a reply is usually queued already: the kernel answers
 * during our send) and polls only when nothing is there. Returns the number
 * received or -errno; lens[i] = length (0 for a datagram not sent by the
 * kernel), trunc[i] = it did not fit its slot. */
static int recv_slots(ipvs_handle *h, unsigned n, size_t slot, size_t *lens, int *trunc,
                      const struct timespec *t0)
{
    struct mmsghdr mm[NL_MAXSLOTS];
    struct iovec iov[NL_MAXSLOTS];
    struct sockaddr_nl src[NL_MAXSLOTS];
    int to = h->timeout_ms;

    for (;;) {
        int r;
        memset(mm, 0, sizeof(mm[0]) * n);
        memset(src, 0, sizeof(src[0]) * n);
        for (unsigned i = 0; i < n; i++) {
            iov[i].iov_base = h->rxbuf + (size_t)i * slot;
            iov[i].iov_len = slot;
            mm[i].msg_hdr.msg_name = &src[i];
            mm[i].msg_hdr.msg_namelen = sizeof(src[i]);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        r = recvmmsg(h->fd, mm, n, to > 0 ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
        if (r < 0) {
            int f = recv_failed(h, t0, to);
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
            if (lens[i] > slot)
                lens[i] = slot;
            if (lens[i] && !trunc[i])
                ipvs_rx_seen(iov[i].iov_base, lens[i]);
        }
        return r;
    }
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

    if (h->rx_pending) {
        ssize_t len = (ssize_t)h->rx_pending;
        h->rx_pending = 0;
        *data = h->rxbuf + h->rxcap / 2;
        return len;
    }
    if (h->timeout_ms > 0)
        clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        size_t half = h->rxcap / 2;
        size_t lens[2] = { 0, 0 };
        int trunc[2] = { 0, 0 };
        int r = recv_slots(h, 2, half, lens, trunc, &t0);

        if (r < 0)
            return r;
        for (int i = 0; i < r; i++) {
            if (trunc[i]) {
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
        }
        if (lens[0]) {
            h->rx_pending = lens[1];
            *data = h->rxbuf;
            return (ssize_t)lens[0];
        }
        if (lens[1]) {
            *data = h->rxbuf + half;     /* only the second was the kernel's */
            return (ssize_t)lens[1];
        }
        /* nothing from the kernel: receive again */
    }
}

/* Batch replies: receive up to NL_MAXSLOTS datagrams at once into NL_SLOT-byte
 * slots of h->rxbuf (error replies are small; a longer datagram is
 * truncated, which only matters if it is one of ours). Waits like nl_recv for
 * the first one. Returns the number received or -errno; lens[i] = length,
 * trunc[i] = truncated, or lens[i] = 0 for a datagram not from the kernel. */
int nl_recv_many(ipvs_handle *h, size_t *lens, int *trunc)
{
    unsigned nslots = (unsigned)(h->rxcap / NL_SLOT);
    struct timespec t0;

    h->rx_pending = 0;   /* rxbuf is reused: a waiting datagram would be stale */
    if (nslots > NL_MAXSLOTS)
        nslots = NL_MAXSLOTS;
    if (h->timeout_ms > 0)
        clock_gettime(CLOCK_MONOTONIC, &t0);
    return recv_slots(h, nslots, NL_SLOT, lens, trunc, &t0);
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

/* A callback failure is remembered and returned once the request is
 * complete (the rest of its replies are read, not left in the socket). */
int nl_wait(ipvs_handle *h, uint32_t seq, int mode, nl_cb cb, void *ctx, size_t *ndata)
{
    int cb_err = 0, ack = 0;
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
            if (m.pid != h->portid)
                continue;                       /* not ours */
            if (mode == WAIT_PROBE && m.seq == seq + 1)
                return ack;                     /* the probe answered: done */
            if (m.seq != seq)
                continue;                       /* stale */
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
                if (mode == WAIT_PROBE) {
                    ack = e;
                    continue;
                }
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

int nl_resolve_family(ipvs_handle *h, uint16_t *id)
{
    unsigned char buf[128];
    struct nlb b = nlb_init(buf, sizeof(buf));
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

int nl_family_recheck(ipvs_handle *h)
{
    uint16_t id = 0;
    char saved[IPVS_ERRMSG_MAX];
    int r;

    memcpy(saved, h->errmsg, sizeof(saved));
    r = nl_resolve_family(h, &id);
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

int nl_txn(ipvs_handle *h, size_t len, int mode, nl_cb cb, void *ctx)
{
    int busy_tries = 0, fam_tried = 0;
    for (;;) {
        uint32_t seq = ++h->seq;
        size_t nd;
        int r;

        nlb_set_seq_type(h->txbuf, seq, h->family_id);
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
            f = nl_family_recheck(h);
            if (f == 1)
                continue;
            if (f == -ENOPROTOOPT)
                return f;
        }
        return r;
    }
}
