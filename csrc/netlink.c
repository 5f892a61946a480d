/*
 * netlink.c - the generic-netlink transport (family "IPVS") of libipvs: the
 * transport interface (nl_open, nl_get_services, ...). Requests are built by
 * nlbuild.c, sent and matched with their replies by nlio.c, parsed by
 * nlparse.c; batches are nlbatch.c. libc only, written from the uapi numbers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>

#include "alloc.h"
#include "nl_int.h"
#include "uapi.h"

#ifndef SO_RCVBUFFORCE
#define SO_RCVBUFFORCE 33
#endif

/* A growable array that dump callbacks append to (ipvs_realloc'ed; the
 * caller takes arr, or frees it on failure). */
struct growable {
    void *arr;
    size_t n, cap;
    size_t elem;               /* element size */
    size_t first;              /* capacity of the first allocation */
};

/* Room for one more element: its address (not yet counted), or NULL. */
static void *grow_slot(struct growable *g)
{
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : g->first;
        void *na = ipvs_realloc(g->arr, ncap * g->elem);
        if (!na)
            return NULL;
        g->arr = na;
        g->cap = ncap;
    }
    return (unsigned char *)g->arr + g->n * g->elem;
}

/* Hand a dump's array to the caller, or free it after a failure. */
static int grow_finish(struct growable *g, int r, void **out, size_t *n)
{
    if (r < 0) {
        ipvs_xfree(g->arr);
        return r;
    }
    *out = g->arr;
    *n = g->n;
    return 0;
}

/* A request of cmd, about svc (its key) when svc, completed as mode says:
 * WAIT_ACK asks for an ack, WAIT_DUMP for a dump, WAIT_REPLY for one reply. */
static int svc_cmd(ipvs_handle *h, uint8_t cmd, int mode, const struct ipvs_service *svc,
                   nl_cb cb, void *ctx)
{
    static const uint16_t flags[] = {
        [WAIT_ACK] = K_NLM_F_REQUEST | K_NLM_F_ACK,
        [WAIT_REPLY] = K_NLM_F_REQUEST,
        [WAIT_DUMP] = K_NLM_F_REQUEST | K_NLM_F_DUMP,
    };
    struct nlb b = nl_tx_begin(h);
    size_t start = nlb_msg_begin(&b, h->family_id, flags[mode], 0, cmd, K_IPVS_GENL_VERSION);
    if (svc)
        nlb_service(&b, svc, 0);
    nlb_msg_end(&b, start);
    if (b.full)
        return -EMSGSIZE;
    return nl_txn(h, b.len, mode, cb, ctx);
}

static int do_op(ipvs_handle *h, int opcode, const struct ipvs_service *svc,
                 const struct ipvs_dest *d)
{
    struct ipvs_op op;
    struct nlb b = nl_tx_begin(h);
    int r;

    memset(&op, 0, sizeof(op));
    op.op = opcode;
    op.svc = *svc;
    if (d)
        op.dest = *d;
    r = nlb_op(&b, h->family_id, 0, K_NLM_F_REQUEST | K_NLM_F_ACK, &op);
    if (r < 0)
        return r;
    if (b.full)
        return -EMSGSIZE;
    return nl_txn(h, b.len, WAIT_ACK, NULL, NULL);
}

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

    r = nl_resolve_family(h, &h->family_id);
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

int nl_get_info(ipvs_handle *h, struct ipvs_info *out)
{
    memset(out, 0, sizeof(*out));
    return svc_cmd(h, K_IPVS_CMD_GET_INFO, WAIT_REPLY, NULL, info_cb, out);
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
    struct svc_one c = { out, 0 };
    int r = svc_cmd(h, K_IPVS_CMD_GET_SERVICE, WAIT_REPLY, key, svc_one_cb, &c);
    if (r == 0 && !c.got)
        r = -EBADMSG;
    return r;
}

static int svc_list_cb(void *ctx, const struct nlp_msg *m)
{
    struct growable *g = ctx;
    struct ipvs_service *s = grow_slot(g);
    int r;
    if (!s)
        return -ENOMEM;
    r = nlp_parse_service_msg(m, s);
    if (r == 0)
        g->n++;
    return r;
}

int nl_get_services(ipvs_handle *h, struct ipvs_service **out, size_t *n)
{
    struct growable g = { NULL, 0, 0, sizeof(struct ipvs_service), 64 };
    *out = NULL;
    *n = 0;
    return grow_finish(&g, svc_cmd(h, K_IPVS_CMD_GET_SERVICE, WAIT_DUMP, NULL, svc_list_cb, &g),
                       (void **)out, n);
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

struct dest_list { struct growable g; uint16_t svc_af; };

static int dest_list_cb(void *ctx, const struct nlp_msg *m)
{
    struct dest_list *l = ctx;
    struct ipvs_dest *d = grow_slot(&l->g);
    int r;
    if (!d)
        return -ENOMEM;
    r = nlp_parse_dest_msg(m, l->svc_af, d);
    if (r == 0)
        l->g.n++;
    return r;
}

int nl_get_dests(ipvs_handle *h, const struct ipvs_service *svc, struct ipvs_dest **out, size_t *n)
{
    struct dest_list l = { { NULL, 0, 0, sizeof(struct ipvs_dest), 16 }, svc->af };
    *out = NULL;
    *n = 0;
    return grow_finish(&l.g, svc_cmd(h, K_IPVS_CMD_GET_DEST, WAIT_DUMP, svc, dest_list_cb, &l),
                       (void **)out, n);
}

int nl_flush(ipvs_handle *h)
{
    return svc_cmd(h, K_IPVS_CMD_FLUSH, WAIT_ACK, NULL, NULL, NULL);
}

int nl_zero(ipvs_handle *h, const struct ipvs_service *svc)
{
    return svc_cmd(h, K_IPVS_CMD_ZERO, WAIT_ACK, svc, NULL, NULL);
}

static int config_cb(void *ctx, const struct nlp_msg *m)
{
    return nlp_parse_config_msg(m, ctx);
}

int nl_get_timeouts(ipvs_handle *h, struct ipvs_timeouts *out)
{
    memset(out, 0, sizeof(*out));
    return svc_cmd(h, K_IPVS_CMD_GET_CONFIG, WAIT_REPLY, NULL, config_cb, out);
}

int nl_set_timeouts(ipvs_handle *h, const struct ipvs_timeouts *to)
{
    struct nlb b = nl_tx_begin(h);
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
    struct daemon_list l = { out, 0 };
    int r;

    *n = 0;
    memset(out, 0, 2 * sizeof(*out));
    r = svc_cmd(h, K_IPVS_CMD_GET_DAEMON, WAIT_DUMP, NULL, daemon_cb, &l);
    if (r < 0)
        return r;
    *n = l.n;
    return 0;
}

int nl_start_daemon(ipvs_handle *h, const struct ipvs_daemon *d)
{
    struct nlb b = nl_tx_begin(h);
    size_t start = nlb_msg_begin(&b, h->family_id, K_NLM_F_REQUEST | K_NLM_F_ACK, 0,
                                 K_IPVS_CMD_NEW_DAEMON, K_IPVS_GENL_VERSION);
    int r = nlb_daemon(&b, d);
    if (r < 0)
        return r;
    nlb_msg_end(&b, start);
    if (b.full)
        return -EMSGSIZE;
    return nl_txn(h, b.len, WAIT_ACK, NULL, NULL);
}

int nl_stop_daemon(ipvs_handle *h, int state)
{
    struct nlb b = nl_tx_begin(h);
    size_t start, nest, probe, nd;
    uint32_t seq;
    int r;

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
    nlb_set_seq_type(b.buf + start, seq, h->family_id);
    nlb_set_seq_type(b.buf + probe, ++h->seq, h->family_id);
    r = nl_send(h, b.buf, b.len);
    if (r < 0)
        return r;
    return nl_wait(h, seq, WAIT_PROBE, NULL, NULL, &nd);
}
