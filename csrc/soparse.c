/*
 * soparse.c - decoding of legacy IPVS sockopt replies. See soparse.h.
 *
 * Entries are copied out with memcpy before use, so the input buffer needs no
 * particular alignment; strings are bounded and re-terminated.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "soparse.h"
#include "sockopt_uapi.h"

_Static_assert(IPVS_SCHED_NAME_MAX == SO_IPVS_NAMELEN, "scheduler name size");
_Static_assert(IPVS_IFNAME_MAX == SO_IPVS_NAMELEN, "interface name size");

size_t soparse_services_size(size_t n)
{
    size_t hdr = sizeof(struct so_get_services), ent = sizeof(struct so_svc_entry);
    if (n > ((size_t)INT_MAX - hdr) / ent)
        return 0;
    return hdr + n * ent;
}

size_t soparse_dests_size(size_t n)
{
    size_t hdr = sizeof(struct so_get_dests), ent = sizeof(struct so_dest_entry);
    if (n > ((size_t)INT_MAX - hdr) / ent)
        return 0;
    return hdr + n * ent;
}

static void copy_name(char *dst, const char *src, size_t size)
{
    memcpy(dst, src, size);
    dst[size - 1] = '\0';
    size_t l = strnlen(dst, size);
    memset(dst + l, 0, size - l);
}

static int all_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i])
            return 0;
    return 1;
}

static void decode_stats(const struct so_stats *s, struct ipvs_stats *out)
{
    out->conns = s->conns;
    out->inpkts = s->inpkts;
    out->outpkts = s->outpkts;
    out->inbytes = s->inbytes;
    out->outbytes = s->outbytes;
    out->cps = s->cps;
    out->inpps = s->inpps;
    out->outpps = s->outpps;
    out->inbps = s->inbps;
    out->outbps = s->outbps;
}

int soparse_info(const void *buf, size_t len, struct ipvs_info *out,
                 uint32_t *num_services)
{
    struct so_info in;
    if (!buf || len < sizeof(in))
        return -EPROTO;
    memcpy(&in, buf, sizeof(in));
    out->version = in.version;
    out->conn_tab_size = in.conn_tab_size;
    if (num_services)
        *num_services = in.num_services;
    return 0;
}

int soparse_version(const void *buf, size_t len, struct ipvs_info *out)
{
    char s[SO_IPVS_VERSION_BUFLEN];
    unsigned a, b, c, size;
    if (!buf || len == 0)
        return -EPROTO;
    if (len > sizeof(s) - 1)
        len = sizeof(s) - 1;
    memcpy(s, buf, len);
    s[len] = '\0';
    if (sscanf(s, "IP Virtual Server version %u.%u.%u (size=%u)", &a, &b, &c, &size) != 4
        || a > 255 || b > 255 || c > 255)
        return -EPROTO;
    out->version = (a << 16) | (b << 8) | c;
    out->conn_tab_size = size;
    return 0;
}

static void decode_service(const struct so_svc_entry *e, struct ipvs_service *out)
{
    memset(out, 0, sizeof(*out));
    out->af = AF_INET;
    out->fwmark = e->fwmark;
    /* fwmark services: the kernel stores the protocol of the request (TCP
     * by convention); the public struct says 0, as netlink reports it */
    out->protocol = e->fwmark ? 0 : e->protocol;
    memcpy(&out->addr.ip, &e->addr, sizeof(e->addr));
    out->port = ntohs(e->port);
    copy_name(out->sched_name, e->sched_name, sizeof(out->sched_name));
    out->flags = e->flags;
    out->flags_mask = 0;
    out->timeout = e->timeout;
    out->netmask = e->netmask;
    out->stats_kind = IPVS_STATS_32;
    decode_stats(&e->stats, &out->stats);
}

int soparse_service_entry(const void *buf, size_t len, struct ipvs_service *out,
                          uint32_t *num_dests)
{
    struct so_svc_entry e;
    if (!buf || len < sizeof(e))
        return -EPROTO;
    memcpy(&e, buf, sizeof(e));
    decode_service(&e, out);
    if (num_dests)
        *num_dests = e.num_dests;
    return 0;
}

static void decode_dest(const struct so_dest_entry *e, struct ipvs_dest *out)
{
    memset(out, 0, sizeof(*out));
    out->af = AF_INET;
    memcpy(&out->addr.ip, &e->addr, sizeof(e->addr));
    out->port = ntohs(e->port);
    /* drop kernel-internal bits (0x0100 "inactive" is always set) */
    out->conn_flags = e->conn_flags & SO_IPVS_CONN_F_DEST_MASK;
    out->weight = e->weight;
    out->u_threshold = e->u_threshold;
    out->l_threshold = e->l_threshold;
    out->activeconns = e->activeconns;
    out->inactconns = e->inactconns;
    out->persistconns = e->persistconns;
    out->has_af = 0;
    out->has_tun = 0;
    out->stats_kind = IPVS_STATS_32;
    decode_stats(&e->stats, &out->stats);
}

/* One filled entry (an aligned copy) into out[i] (out NULL: past the
 * caller's room, only checked); < 0 refuses the whole reply. */
typedef int (*so_entry_fn)(const void *e, void *out, size_t i);

/* The entry table of a GET_SERVICES / GET_DESTS reply: count entries of
 * esize bytes at p. The kernel fills them from the start and leaves the rest
 * zero; a nonzero entry after a zero one is not a kernel reply (-EPROTO).
 * *filled = the number of filled entries (also beyond cap). */
static int walk_table(const unsigned char *p, size_t count, size_t esize, so_entry_fn fn,
                      void *out, size_t cap, size_t *filled)
{
    union { struct so_svc_entry s; struct so_dest_entry d; } e;
    size_t i, k = 0;

    for (i = 0; i < count; i++, p += esize) {
        int r;
        memcpy(&e, p, esize);
        if (all_zero(&e, esize))
            break;
        r = fn(&e, k < cap ? out : NULL, k);
        if (r < 0)
            return r;
        k++;
    }
    for (; i < count; i++, p += esize)
        if (!all_zero(p, esize))
            return -EPROTO;             /* a hole */
    *filled = k;
    return 0;
}

static int svc_entry(const void *e, void *out, size_t i)
{
    const struct so_svc_entry *s = e;
    if (s->sched_name[0] == '\0')
        return -EPROTO;                 /* the kernel always names one ("none") */
    if (out)
        decode_service(s, (struct ipvs_service *)out + i);
    return 0;
}

/* (a real destination never has address 0.0.0.0: no filled one is all zero) */
static int dest_entry(const void *e, void *out, size_t i)
{
    if (out)
        decode_dest(e, (struct ipvs_dest *)out + i);
    return 0;
}

/* A table reply: a header of hdrsize bytes holding count, then count
 * entries of esize bytes, size bytes in all. */
static int parse_table(const void *buf, size_t len, size_t hdrsize, uint32_t count,
                       size_t size, size_t esize, so_entry_fn fn, void *out, size_t cap,
                       size_t *n, size_t *slots)
{
    int r;
    if (size != len)
        return -EPROTO;
    r = walk_table((const unsigned char *)buf + hdrsize, count, esize, fn, out, cap, n);
    if (r == 0)
        *slots = count;
    return r;
}

int soparse_services(const void *buf, size_t len, struct ipvs_service *out,
                     size_t cap, size_t *n, size_t *slots)
{
    struct so_get_services hdr;

    *n = 0;
    *slots = 0;
    if (!buf || len < sizeof(hdr))
        return -EPROTO;
    memcpy(&hdr, buf, sizeof(hdr));
    return parse_table(buf, len, sizeof(hdr), hdr.num_services,
                       soparse_services_size(hdr.num_services), sizeof(struct so_svc_entry),
                       svc_entry, out, cap, n, slots);
}

int soparse_dests(const void *buf, size_t len, struct ipvs_dest *out,
                  size_t cap, size_t *n, size_t *slots)
{
    struct so_get_dests hdr;

    *n = 0;
    *slots = 0;
    if (!buf || len < sizeof(hdr))
        return -EPROTO;
    memcpy(&hdr, buf, sizeof(hdr));
    return parse_table(buf, len, sizeof(hdr), hdr.num_dests,
                       soparse_dests_size(hdr.num_dests), sizeof(struct so_dest_entry),
                       dest_entry, out, cap, n, slots);
}

int soparse_timeouts(const void *buf, size_t len, struct ipvs_timeouts *out)
{
    struct so_timeouts t;
    if (!buf || len < sizeof(t))
        return -EPROTO;
    memcpy(&t, buf, sizeof(t));
    if (t.tcp < 0 || t.tcp_fin < 0 || t.udp < 0)
        return -EPROTO;
    out->tcp = (uint32_t)t.tcp;
    out->tcp_fin = (uint32_t)t.tcp_fin;
    out->udp = (uint32_t)t.udp;
    return 0;
}

int soparse_daemons(const void *buf, size_t len, struct ipvs_daemon out[2],
                    size_t *n)
{
    struct so_daemon d[2];
    size_t k = 0;

    *n = 0;
    if (!buf || len < sizeof(d))
        return -EPROTO;
    memcpy(d, buf, sizeof(d));
    for (int i = 0; i < 2; i++) {
        if (d[i].state == 0)
            continue;
        if (d[i].state != (i == 0 ? IPVS_STATE_MASTER : IPVS_STATE_BACKUP))
            return -EPROTO;
        memset(&out[k], 0, sizeof(out[k]));
        out[k].state = d[i].state;
        copy_name(out[k].mcast_ifn, d[i].mcast_ifn, sizeof(out[k].mcast_ifn));
        out[k].syncid = (uint32_t)d[i].syncid;
        k++;
    }
    *n = k;
    return 0;
}
