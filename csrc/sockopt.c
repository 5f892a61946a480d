/*
 * sockopt.c - the legacy IPVS transport: getsockopt/setsockopt on a raw IPv4
 * socket at level IPPROTO_IP (struct layouts in sockopt_uapi.h, reply
 * decoding in soparse.c).
 *
 * What this interface cannot express is refused with -EOPNOTSUPP before
 * anything is sent, and h->errmsg names the feature:
 *   IPv6 services/destinations, persistence engines, tunnel type/port/flags,
 *   daemon sync max length / multicast group/port/TTL.
 *
 * Notes
 *  - IPv6 services are invisible here: get_services lists IPv4 ones only.
 *  - Service flags travel without a mask. add_service sends flags & mask;
 *    update_service with a partial mask (neither 0 nor ~0) reads the current
 *    flags with GET_SERVICE first and sends the merged full value (not atomic
 *    against other writers); otherwise it sends the full flags value.
 *  - fwmark services are sent with protocol TCP, as the kernel requires a
 *    TCP/UDP/SCTP protocol even with a fwmark and matches it on edit/delete;
 *    they read back with protocol 0.
 *  - The kernel fills GET_SERVICES / GET_DESTS tables up to the size asked
 *    and silently drops the rest. We ask for one slot more than the count just
 *    read; a completely full table means the set grew in between, and we retry
 *    (bounded), so a result is never silently truncated.
 *  - Calls are synchronous syscalls: h->timeout_ms does not apply.
 *  - The kernel answers a protocol other than TCP/UDP/SCTP with EFAULT; the
 *    errno is kept and errmsg says "invalid protocol".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "alloc.h"
#include "transport.h"
#include "sockopt_uapi.h"
#include "soparse.h"

#define SO_RETRIES 10

static const char MSG_IPV6[] = "IPv6 (sockopt backend is IPv4-only)";

static int so_get(ipvs_handle *h, int cmd, void *buf, socklen_t *len)
{
    if (getsockopt(h->fd, IPPROTO_IP, cmd, buf, len) < 0)
        return -errno;
    ipvs_rx_seen(buf, *len);
    return 0;
}

/* A GET of a fixed-size reply into a zeroed buf; *len its length. */
static int so_get_fixed(ipvs_handle *h, int cmd, void *buf, socklen_t size, socklen_t *len)
{
    memset(buf, 0, size);
    *len = size;
    return so_get(h, cmd, buf, len);
}

static int so_set(ipvs_handle *h, int cmd, const void *buf, socklen_t len)
{
    if (setsockopt(h->fd, IPPROTO_IP, cmd, buf, len) < 0)
        return -errno;
    return 0;
}

/* A SET command carrying a service: keep the kernel's EFAULT for a bad
 * protocol, but say what it means. */
static int so_set_svc(ipvs_handle *h, int cmd, const void *buf, socklen_t len)
{
    int rc = so_set(h, cmd, buf, len);
    if (rc == -EFAULT)
        ipvs_set_errmsg(h, "invalid protocol");
    return rc;
}

/* ---- request checks and encoding ---- */

static int check_af(ipvs_handle *h, uint16_t af)
{
    if (af == AF_INET)
        return 0;
    if (af == AF_INET6) {
        ipvs_set_errmsg(h, "%s", MSG_IPV6);
        return -EOPNOTSUPP;
    }
    ipvs_set_errmsg(h, "address family %u not supported", (unsigned)af);
    return -EAFNOSUPPORT;
}

/* Identification part of a service (all service-bearing requests). */
static int check_svc_key(ipvs_handle *h, const struct ipvs_service *s)
{
    return check_af(h, s->af);
}

/* Everything an add/update needs on top. */
static int check_svc_full(ipvs_handle *h, const struct ipvs_service *s)
{
    int rc = check_svc_key(h, s);
    if (rc < 0)
        return rc;
    if (s->pe_name[0] != '\0') {
        ipvs_set_errmsg(h, "persistence engine");
        return -EOPNOTSUPP;
    }
    return 0;
}

static uint16_t wire_protocol(const struct ipvs_service *s)
{
    /* the kernel insists on TCP/UDP/SCTP even with a fwmark and compares the
     * stored protocol on edit/delete; TCP is the convention (netlink too) */
    return s->fwmark ? IPPROTO_TCP : s->protocol;
}

static void encode_svc(const struct ipvs_service *s, uint32_t flags,
                       struct so_svc_req *r)
{
    memset(r, 0, sizeof(*r));
    r->protocol = wire_protocol(s);
    r->addr = s->addr.ip;
    r->port = htons(s->port);
    r->fwmark = s->fwmark;
    memcpy(r->sched_name, s->sched_name, sizeof(r->sched_name));
    r->flags = flags;
    r->timeout = s->timeout;
    r->netmask = s->netmask;
}

static int check_dest(ipvs_handle *h, const struct ipvs_dest *d, int full)
{
    if (d->af != 0 && d->af != AF_INET) {
        if (d->af == AF_INET6) {
            ipvs_set_errmsg(h, "%s", MSG_IPV6);
            return -EOPNOTSUPP;
        }
        ipvs_set_errmsg(h, "address family %u not supported", (unsigned)d->af);
        return -EAFNOSUPPORT;
    }
    if (full && (d->tun_type != 0 || d->tun_port != 0 || d->tun_flags != 0)) {
        ipvs_set_errmsg(h, "tunnel type/port/flags");
        return -EOPNOTSUPP;
    }
    return 0;
}

static void encode_dest(const struct ipvs_dest *d, struct so_dest_req *r)
{
    memset(r, 0, sizeof(*r));
    r->addr = d->addr.ip;
    r->port = htons(d->port);
    r->conn_flags = d->conn_flags;
    r->weight = d->weight;
    r->u_threshold = d->u_threshold;
    r->l_threshold = d->l_threshold;
}

/* ---- open / info ---- */

static int get_info_raw(ipvs_handle *h, struct ipvs_info *info, uint32_t *nsvc)
{
    struct so_info in;
    struct ipvs_info tmp;
    socklen_t len;
    int rc = so_get_fixed(h, SO_IPVS_GET_INFO, &in, sizeof(in), &len);
    return rc < 0 ? rc : soparse_info(&in, len, info ? info : &tmp, nsvc);
}

int so_open(ipvs_handle *h)
{
    int rc;
    h->fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (h->fd < 0) {
        rc = -errno;
        ipvs_set_errmsg(h, "cannot create raw socket for IPVS sockopts: %s",
                        strerror(-rc));
        return rc;
    }
    rc = get_info_raw(h, NULL, NULL);
    if (rc < 0) {
        if (rc == -ENOPROTOOPT)
            ipvs_set_errmsg(h, "IPVS sockopt interface not available "
                               "(ip_vs module not loaded?)");
        else
            ipvs_set_errmsg(h, "IPVS sockopt probe failed: %s", strerror(-rc));
        /* the dispatcher closes h->fd */
        return rc;
    }
    return 0;
}

void so_close(ipvs_handle *h)
{
    (void)h; /* nothing beyond the socket, which the dispatcher closes */
}

int so_get_info(ipvs_handle *h, struct ipvs_info *out)
{
    return get_info_raw(h, out, NULL);
}

/* ---- services ---- */

static int get_service_raw(ipvs_handle *h, const struct ipvs_service *key,
                           struct ipvs_service *out, uint32_t *num_dests)
{
    struct so_svc_entry e;
    socklen_t len = sizeof(e);
    int rc;

    memset(&e, 0, sizeof(e));
    e.protocol = wire_protocol(key);
    e.addr = key->addr.ip;
    e.port = htons(key->port);
    e.fwmark = key->fwmark;
    rc = so_get(h, SO_IPVS_GET_SERVICE, &e, &len);
    if (rc < 0)
        return rc;
    return soparse_service_entry(&e, len, out, num_dests);
}

int so_add_service(ipvs_handle *h, const struct ipvs_service *svc)
{
    struct so_svc_req r;
    int rc = check_svc_full(h, svc);
    if (rc < 0)
        return rc;
    uint32_t mask = svc->flags_mask ? svc->flags_mask : ~0u;
    encode_svc(svc, svc->flags & mask, &r);
    return so_set_svc(h, SO_IPVS_SET_ADD, &r, sizeof(r));
}

int so_update_service(ipvs_handle *h, const struct ipvs_service *svc)
{
    struct so_svc_req r;
    uint32_t flags = svc->flags;
    int rc = check_svc_full(h, svc);
    if (rc < 0)
        return rc;
    if (svc->flags_mask != 0 && svc->flags_mask != ~0u) {
        /* no mask on this interface: merge with the current flags */
        struct ipvs_service cur;
        rc = get_service_raw(h, svc, &cur, NULL);
        if (rc < 0)
            return rc;
        flags = (cur.flags & ~svc->flags_mask) | (svc->flags & svc->flags_mask);
    }
    encode_svc(svc, flags, &r);
    return so_set_svc(h, SO_IPVS_SET_EDIT, &r, sizeof(r));
}

int so_del_service(ipvs_handle *h, const struct ipvs_service *svc)
{
    struct so_svc_req r;
    int rc = check_svc_key(h, svc);
    if (rc < 0)
        return rc;
    encode_svc(svc, 0, &r);
    return so_set_svc(h, SO_IPVS_SET_DEL, &r, sizeof(r));
}

int so_get_service(ipvs_handle *h, const struct ipvs_service *key,
                   struct ipvs_service *out)
{
    int rc = check_svc_key(h, key);
    if (rc < 0)
        return rc;
    return get_service_raw(h, key, out, NULL);
}

/* ---- the two tables read by count: services and destinations ---- */

/* How one table is read: its GET command and the size of one result. */
struct so_table {
    int cmd;                                  /* SO_IPVS_GET_SERVICES / _DESTS */
    size_t elem;
    size_t (*size)(size_t n);                 /* reply size for n entries */
};

/* The request: how many slots, and for destinations whose. */
static void table_request(const struct so_table *t, void *buf, uint32_t slots,
                          const struct ipvs_service *svc)
{
    if (t->cmd == SO_IPVS_GET_SERVICES) {
        ((struct so_get_services *)buf)->num_services = slots;
    } else {
        struct so_get_dests *q = buf;
        q->protocol = wire_protocol(svc);
        q->addr = svc->addr.ip;
        q->port = htons(svc->port);
        q->fwmark = svc->fwmark;
        q->num_dests = slots;
    }
}

static int table_parse(const struct so_table *t, const void *buf, size_t len, void *out,
                       size_t cap, size_t *n, size_t *slots)
{
    if (t->cmd == SO_IPVS_GET_SERVICES)
        return soparse_services(buf, len, out, cap, n, slots);
    return soparse_dests(buf, len, out, cap, n, slots);
}

/* One read of a table the kernel counted count entries of, into count + 1
 * slots (the extra one detects growth between count and read). 1 = it grew
 * (read again), 0 = *out (malloc'ed, *got entries), < 0 = error. */
static int read_table(ipvs_handle *h, const struct so_table *t, const struct ipvs_service *svc,
                      uint32_t count, void **out, size_t *got)
{
    size_t slots = (size_t)count + 1, size = t->size(slots), n = 0, nslots = 0;
    void *buf, *res;
    socklen_t len;
    int rc;

    if (size == 0)
        return -ENOMEM;
    buf = ipvs_calloc(1, size);
    res = ipvs_calloc(slots, t->elem);
    if (!buf || !res) {
        ipvs_xfree(buf);
        ipvs_xfree(res);
        return -ENOMEM;
    }
    table_request(t, buf, (uint32_t)slots, svc);
    len = (socklen_t)size;
    rc = so_get(h, t->cmd, buf, &len);
    if (rc == 0)
        rc = table_parse(t, buf, size, res, slots, &n, &nslots);
    ipvs_xfree(buf);
    if (rc == -EAGAIN || (rc == 0 && n >= slots)) {
        ipvs_xfree(res);
        return 1;
    }
    if (rc < 0) {
        ipvs_xfree(res);
        return rc;
    }
    if (n > 0) {
        void *shrunk = ipvs_realloc(res, n * t->elem);
        if (shrunk)
            res = shrunk;
    }
    *out = res;
    *got = n;
    return 0;
}

static const struct so_table services_table = {
    SO_IPVS_GET_SERVICES, sizeof(struct ipvs_service), soparse_services_size,
};

/* IPv6 services do not exist for this interface: the kernel's sockopt
 * service count (GET_INFO) leaves them out too (verified on 6.1), so they can
 * be neither listed nor detected here. */
int so_get_services(ipvs_handle *h, struct ipvs_service **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    for (int attempt = 0; attempt < SO_RETRIES; attempt++) {
        uint32_t count;
        int rc = get_info_raw(h, NULL, &count);
        if (rc < 0)
            return rc;
        rc = read_table(h, &services_table, NULL, count, (void **)out, n);
        if (rc <= 0)
            return rc;
    }
    ipvs_set_errmsg(h, "service table kept changing while being read");
    return -EAGAIN;
}

/* ---- destinations ---- */

static int dest_op(ipvs_handle *h, int cmd, const struct ipvs_service *svc,
                   const struct ipvs_dest *d, int full)
{
    struct so_svcdest_req r;
    int rc = check_svc_key(h, svc);
    if (rc < 0)
        return rc;
    rc = check_dest(h, d, full);
    if (rc < 0)
        return rc;
    encode_svc(svc, 0, &r.svc);
    encode_dest(d, &r.dest);
    return so_set_svc(h, cmd, &r, sizeof(r));
}

int so_add_dest(ipvs_handle *h, const struct ipvs_service *svc,
                const struct ipvs_dest *d)
{
    return dest_op(h, SO_IPVS_SET_ADDDEST, svc, d, 1);
}

int so_update_dest(ipvs_handle *h, const struct ipvs_service *svc,
                   const struct ipvs_dest *d)
{
    return dest_op(h, SO_IPVS_SET_EDITDEST, svc, d, 1);
}

int so_del_dest(ipvs_handle *h, const struct ipvs_service *svc,
                const struct ipvs_dest *d)
{
    return dest_op(h, SO_IPVS_SET_DELDEST, svc, d, 0);
}

static const struct so_table dests_table = {
    SO_IPVS_GET_DESTS, sizeof(struct ipvs_dest), soparse_dests_size,
};

int so_get_dests(ipvs_handle *h, const struct ipvs_service *svc,
                 struct ipvs_dest **out, size_t *n)
{
    size_t prev_gap = 0;
    int rc = check_svc_key(h, svc);

    *out = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    for (int attempt = 0; attempt < SO_RETRIES; attempt++) {
        uint32_t count;
        struct ipvs_service cur;
        struct ipvs_dest *res = NULL;
        size_t got = 0;
        rc = get_service_raw(h, svc, &cur, &count);
        if (rc < 0)
            return rc;
        rc = read_table(h, &dests_table, svc, count, (void **)&res, &got);
        if (rc < 0)
            return rc;   /* ESRCH: the service went away meanwhile */
        if (rc > 0)
            continue;
        if (got < count) {
            /* IPv6 (tunnel) destinations are counted but not listed */
            size_t gap = count - got;
            ipvs_xfree(res);
            if (gap == prev_gap) {
                ipvs_set_errmsg(h, "listing %zu IPv6 destination(s) (IPv6 is invisible to "
                                "the IPv4-only sockopt interface)", gap);
                return -EOPNOTSUPP;
            }
            prev_gap = gap;
            continue;
        }
        *out = res;
        *n = got;
        return 0;
    }
    ipvs_set_errmsg(h, "destination list kept changing while being read");
    return -EAGAIN;
}

/* ---- global operations ---- */

int so_flush(ipvs_handle *h)
{
    return so_set(h, SO_IPVS_SET_FLUSH, NULL, 0);
}

int so_zero(ipvs_handle *h, const struct ipvs_service *svc)
{
    struct so_svc_req r;
    if (!svc) {
        /* no address, port or fwmark: the kernel zeroes everything */
        memset(&r, 0, sizeof(r));
        return so_set(h, SO_IPVS_SET_ZERO, &r, sizeof(r));
    }
    int rc = check_svc_key(h, svc);
    if (rc < 0)
        return rc;
    encode_svc(svc, 0, &r);
    return so_set_svc(h, SO_IPVS_SET_ZERO, &r, sizeof(r));
}

int so_get_timeouts(ipvs_handle *h, struct ipvs_timeouts *out)
{
    struct so_timeouts t;
    socklen_t len;
    int rc = so_get_fixed(h, SO_IPVS_GET_TIMEOUT, &t, sizeof(t), &len);
    return rc < 0 ? rc : soparse_timeouts(&t, len, out);
}

int so_set_timeouts(ipvs_handle *h, const struct ipvs_timeouts *to)
{
    struct so_timeouts t;
    /* 0 = leave unchanged, on the kernel side too */
    if (to->tcp > INT_MAX || to->tcp_fin > INT_MAX || to->udp > INT_MAX) {
        ipvs_set_errmsg(h, "timeout out of range");
        return -EINVAL;
    }
    t.tcp = (int32_t)to->tcp;
    t.tcp_fin = (int32_t)to->tcp_fin;
    t.udp = (int32_t)to->udp;
    return so_set(h, SO_IPVS_SET_TIMEOUT, &t, sizeof(t));
}

int so_get_daemons(ipvs_handle *h, struct ipvs_daemon *out, size_t *n)
{
    struct so_daemon d[2];
    socklen_t len;
    int rc;
    *n = 0;
    rc = so_get_fixed(h, SO_IPVS_GET_DAEMON, d, sizeof(d), &len);
    return rc < 0 ? rc : soparse_daemons(d, sizeof(d), out, n);
}

int so_start_daemon(ipvs_handle *h, const struct ipvs_daemon *dm)
{
    struct so_daemon d;
    static const union ipvs_addr zero;
    if (dm->sync_maxlen != 0 || dm->mcast_af != 0 || dm->mcast_port != 0 ||
        dm->mcast_ttl != 0 ||
        memcmp(&dm->mcast_group, &zero, sizeof(zero)) != 0) {
        ipvs_set_errmsg(h, "daemon sync max length / multicast group/port/TTL");
        return -EOPNOTSUPP;
    }
    memset(&d, 0, sizeof(d));
    d.state = dm->state;
    memcpy(d.mcast_ifn, dm->mcast_ifn, sizeof(d.mcast_ifn));
    d.syncid = (int32_t)dm->syncid;
    return so_set(h, SO_IPVS_SET_STARTDAEMON, &d, sizeof(d));
}

int so_stop_daemon(ipvs_handle *h, int state)
{
    struct so_daemon d;
    memset(&d, 0, sizeof(d));
    d.state = state;
    int rc = so_set(h, SO_IPVS_SET_STOPDAEMON, &d, sizeof(d));
    /* The kernel passes on kthread_stop()'s result: EINTR when the sync
     * thread had not run yet (stop right after start). The daemon is stopped
     * all the same (the state is cleared before the threads are stopped), and
     * no other path of STOPDAEMON yields EINTR: report success. */
    if (rc == -EINTR)
        rc = 0;
    return rc;
}

/* ---- batch: one syscall per op, never stopping at a failure ---- */

int so_batch(ipvs_handle *h, struct ipvs_op *ops, size_t n)
{
    char first[IPVS_ERRMSG_MAX] = "";
    for (size_t i = 0; i < n; i++) {
        struct ipvs_op *op = &ops[i];
        h->errmsg[0] = '\0';
        switch (op->op) {
        case IPVS_OP_ADD_SERVICE:
            op->err = so_add_service(h, &op->svc);
            break;
        case IPVS_OP_UPDATE_SERVICE:
            op->err = so_update_service(h, &op->svc);
            break;
        case IPVS_OP_DEL_SERVICE:
            op->err = so_del_service(h, &op->svc);
            break;
        case IPVS_OP_ADD_DEST:
            op->err = so_add_dest(h, &op->svc, &op->dest);
            break;
        case IPVS_OP_UPDATE_DEST:
            op->err = so_update_dest(h, &op->svc, &op->dest);
            break;
        case IPVS_OP_DEL_DEST:
            op->err = so_del_dest(h, &op->svc, &op->dest);
            break;
        default:
            op->err = -EINVAL;
            ipvs_set_errmsg(h, "unknown batch operation %d", op->op);
            break;
        }
        if (op->err < 0 && first[0] == '\0' && h->errmsg[0] != '\0')
            memcpy(first, h->errmsg, sizeof(first));
    }
    /* keep the first failure's message, as netlink's first extack would be */
    memcpy(h->errmsg, first, sizeof(first));
    return 0;
}
