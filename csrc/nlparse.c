/*
 * nlparse.c - pure parsing of generic-netlink messages of the IPVS family.
 * See nlparse.h. Written from the kernel's uapi numbers.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "nlparse.h"

/* unaligned native-endian loads */
static uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint16_t ldbe16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

int nlp_next_msg(const uint8_t *buf, size_t len, size_t *off, struct nlp_msg *m)
{
    size_t o = *off, rest;
    uint32_t mlen;

    if (o >= len)
        return 0;
    rest = len - o;
    if (rest < K_NLMSG_HDRLEN)
        return -EBADMSG;
    mlen = ld32(buf + o + offsetof(struct k_nlmsghdr, nlmsg_len));
    if (mlen < K_NLMSG_HDRLEN || mlen > rest)
        return -EBADMSG;
    m->len = mlen;
    m->type = ld16(buf + o + offsetof(struct k_nlmsghdr, nlmsg_type));
    m->flags = ld16(buf + o + offsetof(struct k_nlmsghdr, nlmsg_flags));
    m->seq = ld32(buf + o + offsetof(struct k_nlmsghdr, nlmsg_seq));
    m->pid = ld32(buf + o + offsetof(struct k_nlmsghdr, nlmsg_pid));
    m->data = buf + o + K_NLMSG_HDRLEN;
    m->datalen = mlen - K_NLMSG_HDRLEN;
    /* the last message may lack its alignment padding */
    o += K_NLMSG_ALIGN((size_t)mlen);
    *off = o > len ? len : o;
    return 1;
}

int nlp_next_attr(const uint8_t *buf, size_t len, size_t *off, struct nlp_attr *a)
{
    size_t o = *off, rest;
    uint16_t alen;

    if (o >= len)
        return 0;
    rest = len - o;
    if (rest < K_NLA_HDRLEN)
        return -EBADMSG;
    alen = ld16(buf + o + offsetof(struct k_nlattr, nla_len));
    if (alen < K_NLA_HDRLEN || alen > rest)
        return -EBADMSG;
    a->type = ld16(buf + o + offsetof(struct k_nlattr, nla_type)) & K_NLA_TYPE_MASK;
    a->data = buf + o + K_NLA_HDRLEN;
    a->len = alen - K_NLA_HDRLEN;
    o += K_NLA_ALIGN((size_t)alen);
    *off = o > len ? len : o;
    return 1;
}

/* Copy a NUL-terminated string attribute of at most cap bytes incl. NUL. */
static int get_str(const struct nlp_attr *a, char *dst, size_t cap)
{
    const uint8_t *nul = memchr(a->data, 0, a->len);
    size_t n;
    if (!nul)
        return -EBADMSG;
    n = (size_t)(nul - a->data);
    if (n + 1 > cap)
        return -EBADMSG;
    memcpy(dst, a->data, n);
    dst[n] = '\0';
    return 0;
}

static uint8_t ld8(const uint8_t *p) { return p[0]; }

/* get_X(a, &v): the attribute's fixed-size value, or -EBADMSG when its
 * payload is shorter than the value. */
#define NLP_GETTER(name, type, load)                            \
    static int name(const struct nlp_attr *a, type *v)          \
    {                                                           \
        if (a->len < sizeof(type))                              \
            return -EBADMSG;                                    \
        *v = load(a->data);                                     \
        return 0;                                               \
    }
NLP_GETTER(get_u8, uint8_t, ld8)
NLP_GETTER(get_u16, uint16_t, ld16)
NLP_GETTER(get_be16, uint16_t, ldbe16)
NLP_GETTER(get_u32, uint32_t, ld32)

static int get_addr(const struct nlp_attr *a, union ipvs_addr *v)
{
    if (a->len < 16)
        return -EBADMSG;
    memcpy(v->bytes, a->data, 16);
    return 0;
}

int nlp_parse_error(const struct nlp_msg *m, int *error, char *msg, size_t msgsz)
{
    size_t tlv;
    int32_t e;

    if (msg && msgsz)
        msg[0] = '\0';
    if (m->datalen < sizeof(e))
        return -EBADMSG;
    memcpy(&e, m->data + offsetof(struct k_nlmsgerr, error), sizeof(e));
    if (e > 0 || e < -4095)
        return -EBADMSG;
    *error = e;
    if (m->type == K_NLMSG_ERROR) {
        /* struct nlmsgerr: int error; struct nlmsghdr msg; then the rest of
         * the request unless capped, then the TLVs. */
        if (m->datalen < sizeof(struct k_nlmsgerr))
            return -EBADMSG;
        if (m->flags & K_NLM_F_CAPPED) {
            tlv = sizeof(struct k_nlmsgerr);
        } else {
            uint32_t olen = ld32(m->data + offsetof(struct k_nlmsgerr, msg)
                                 + offsetof(struct k_nlmsghdr, nlmsg_len));
            if (olen < K_NLMSG_HDRLEN)
                return -EBADMSG;
            tlv = offsetof(struct k_nlmsgerr, msg) + (size_t)olen;
        }
    } else {
        tlv = sizeof(e);  /* NLMSG_DONE: int error, then TLVs */
    }
    if (!(m->flags & K_NLM_F_ACK_TLVS))
        return 0;
    tlv = K_NLMSG_ALIGN(tlv);
    if (tlv > m->datalen)
        return -EBADMSG;
    {
        const uint8_t *b = m->data + tlv;
        size_t blen = m->datalen - tlv, off = 0;
        struct nlp_attr a;
        int r;
        while ((r = nlp_next_attr(b, blen, &off, &a)) > 0) {
            if (a.type == K_NLMSGERR_ATTR_MSG && msg && msgsz) {
                size_t n = a.len;
                const uint8_t *nul = memchr(a.data, 0, a.len);
                if (nul)
                    n = (size_t)(nul - a.data);
                if (n > msgsz - 1)
                    n = msgsz - 1;
                memcpy(msg, a.data, n);
                msg[n] = '\0';
            }
        }
        if (r < 0)
            return r;
    }
    return 0;
}

int nlp_genl(const struct nlp_msg *m, uint8_t *cmd, const uint8_t **attrs, size_t *alen)
{
    if (m->type < K_NLMSG_MIN_TYPE || m->datalen < K_GENL_HDRLEN)
        return -EBADMSG;
    *cmd = m->data[0];
    *attrs = m->data + K_GENL_HDRLEN;
    *alen = m->datalen - K_GENL_HDRLEN;
    return 0;
}

int nlp_parse_family_msg(const struct nlp_msg *m, uint16_t *id)
{
    const uint8_t *b;
    size_t blen, off = 0;
    uint8_t cmd;
    struct nlp_attr a;
    int r, found = 0;

    if ((r = nlp_genl(m, &cmd, &b, &blen)) < 0)
        return r;
    while ((r = nlp_next_attr(b, blen, &off, &a)) > 0) {
        if (a.type == K_CTRL_ATTR_FAMILY_ID) {
            if ((r = get_u16(&a, id)) < 0)
                return r;
            found = 1;
        }
    }
    if (r < 0)
        return r;
    return found ? 0 : -EBADMSG;
}

int nlp_parse_stats(const uint8_t *buf, size_t len, struct ipvs_stats *out)
{
    size_t off = 0;
    struct nlp_attr a;
    int r;

    memset(out, 0, sizeof(*out));
    while ((r = nlp_next_attr(buf, len, &off, &a)) > 0) {
        uint64_t *dst;
        switch (a.type) {
        case K_IPVS_STATS_ATTR_CONNS:    dst = &out->conns; break;
        case K_IPVS_STATS_ATTR_INPKTS:   dst = &out->inpkts; break;
        case K_IPVS_STATS_ATTR_OUTPKTS:  dst = &out->outpkts; break;
        case K_IPVS_STATS_ATTR_INBYTES:  dst = &out->inbytes; break;
        case K_IPVS_STATS_ATTR_OUTBYTES: dst = &out->outbytes; break;
        case K_IPVS_STATS_ATTR_CPS:      dst = &out->cps; break;
        case K_IPVS_STATS_ATTR_INPPS:    dst = &out->inpps; break;
        case K_IPVS_STATS_ATTR_OUTPPS:   dst = &out->outpps; break;
        case K_IPVS_STATS_ATTR_INBPS:    dst = &out->inbps; break;
        case K_IPVS_STATS_ATTR_OUTBPS:   dst = &out->outbps; break;
        default: continue;   /* PAD and anything newer */
        }
        /* STATS has u32 counters and u64 byte counts, STATS64 all u64:
         * the attribute length says which. */
        if (a.len >= 8)
            *dst = ld64(a.data);
        else if (a.len >= 4)
            *dst = ld32(a.data);
        else
            return -EBADMSG;
    }
    return r;
}

/* A STATS (is64 = 0) or STATS64 attribute of a service or destination:
 * STATS64 wins whichever order the two come in. */
static int stats_attr(const struct nlp_attr *a, int is64, struct ipvs_stats *st, int *kind)
{
    if (!is64 && *kind == IPVS_STATS_64)
        return 0;
    *kind = is64 ? IPVS_STATS_64 : IPVS_STATS_32;
    return nlp_parse_stats(a->data, a->len, st);
}

int nlp_parse_service(const uint8_t *buf, size_t len, struct ipvs_service *out)
{
    size_t off = 0;
    struct nlp_attr a;
    int r = 0, have_af = 0, have_proto = 0, have_addr = 0, have_port = 0,
        have_fwmark = 0;

    memset(out, 0, sizeof(*out));
    while (r >= 0 && (r = nlp_next_attr(buf, len, &off, &a)) > 0) {
        switch (a.type) {
        case K_IPVS_SVC_ATTR_AF:
            r = get_u16(&a, &out->af); have_af = 1; break;
        case K_IPVS_SVC_ATTR_PROTOCOL:
            r = get_u16(&a, &out->protocol); have_proto = 1; break;
        case K_IPVS_SVC_ATTR_ADDR:
            r = get_addr(&a, &out->addr); have_addr = 1; break;
        case K_IPVS_SVC_ATTR_PORT:
            r = get_be16(&a, &out->port); have_port = 1; break;
        case K_IPVS_SVC_ATTR_FWMARK:
            r = get_u32(&a, &out->fwmark); have_fwmark = 1; break;
        case K_IPVS_SVC_ATTR_SCHED_NAME:
            r = get_str(&a, out->sched_name, sizeof(out->sched_name)); break;
        case K_IPVS_SVC_ATTR_PE_NAME:
            r = get_str(&a, out->pe_name, sizeof(out->pe_name)); break;
        case K_IPVS_SVC_ATTR_FLAGS:
            if (a.len < 8) {
                r = -EBADMSG;
            } else {
                out->flags = ld32(a.data);
                out->flags_mask = ld32(a.data + 4);
            }
            break;
        case K_IPVS_SVC_ATTR_TIMEOUT:
            r = get_u32(&a, &out->timeout); break;
        case K_IPVS_SVC_ATTR_NETMASK:
            /* kept as the raw u32: network order mask for IPv4, prefix
             * length for IPv6 (exactly what the kernel stores) */
            r = get_u32(&a, &out->netmask); break;
        case K_IPVS_SVC_ATTR_STATS:
            r = stats_attr(&a, 0, &out->stats, &out->stats_kind); break;
        case K_IPVS_SVC_ATTR_STATS64:
            r = stats_attr(&a, 1, &out->stats, &out->stats_kind); break;
        default:
            break;
        }
    }
    if (r < 0)
        return r;
    if (!have_af)
        return -EBADMSG;
    if (!have_fwmark || out->fwmark == 0) {
        if (!(have_proto && have_addr && have_port))
            return -EBADMSG;
    }
    return 0;
}

int nlp_parse_dest(const uint8_t *buf, size_t len, uint16_t svc_af, struct ipvs_dest *out)
{
    size_t off = 0;
    struct nlp_attr a;
    int r = 0, have_addr = 0, have_port = 0;
    uint32_t w = 0;

    memset(out, 0, sizeof(*out));
    while (r >= 0 && (r = nlp_next_attr(buf, len, &off, &a)) > 0) {
        switch (a.type) {
        case K_IPVS_DEST_ATTR_ADDR:
            r = get_addr(&a, &out->addr); have_addr = 1; break;
        case K_IPVS_DEST_ATTR_PORT:
            r = get_be16(&a, &out->port); have_port = 1; break;
        case K_IPVS_DEST_ATTR_FWD_METHOD:
            r = get_u32(&a, &out->conn_flags); break;
        case K_IPVS_DEST_ATTR_WEIGHT:
            r = get_u32(&a, &w);
            out->weight = (int32_t)w;
            break;
        case K_IPVS_DEST_ATTR_U_THRESH:
            r = get_u32(&a, &out->u_threshold); break;
        case K_IPVS_DEST_ATTR_L_THRESH:
            r = get_u32(&a, &out->l_threshold); break;
        case K_IPVS_DEST_ATTR_ACTIVE_CONNS:
            r = get_u32(&a, &out->activeconns); break;
        case K_IPVS_DEST_ATTR_INACT_CONNS:
            r = get_u32(&a, &out->inactconns); break;
        case K_IPVS_DEST_ATTR_PERSIST_CONNS:
            r = get_u32(&a, &out->persistconns); break;
        case K_IPVS_DEST_ATTR_ADDR_FAMILY:
            r = get_u16(&a, &out->af); out->has_af = 1; break;
        case K_IPVS_DEST_ATTR_TUN_TYPE:
            r = get_u8(&a, &out->tun_type); out->has_tun = 1; break;
        case K_IPVS_DEST_ATTR_TUN_PORT:
            r = get_be16(&a, &out->tun_port); break;
        case K_IPVS_DEST_ATTR_TUN_FLAGS:
            r = get_u16(&a, &out->tun_flags); break;
        case K_IPVS_DEST_ATTR_STATS:
            r = stats_attr(&a, 0, &out->stats, &out->stats_kind); break;
        case K_IPVS_DEST_ATTR_STATS64:
            r = stats_attr(&a, 1, &out->stats, &out->stats_kind); break;
        default:
            break;
        }
    }
    if (r < 0)
        return r;
    if (!(have_addr && have_port))
        return -EBADMSG;
    if (!out->has_af)
        out->af = svc_af;
    return 0;
}

int nlp_parse_daemon(const uint8_t *buf, size_t len, struct ipvs_daemon *out)
{
    size_t off = 0;
    struct nlp_attr a;
    int r = 0, have_state = 0;
    uint32_t v = 0;

    memset(out, 0, sizeof(*out));
    while (r >= 0 && (r = nlp_next_attr(buf, len, &off, &a)) > 0) {
        switch (a.type) {
        case K_IPVS_DAEMON_ATTR_STATE:
            r = get_u32(&a, &v); out->state = (int)v; have_state = 1; break;
        case K_IPVS_DAEMON_ATTR_MCAST_IFN:
            r = get_str(&a, out->mcast_ifn, sizeof(out->mcast_ifn)); break;
        case K_IPVS_DAEMON_ATTR_SYNC_ID:
            r = get_u32(&a, &out->syncid); break;
        case K_IPVS_DAEMON_ATTR_SYNC_MAXLEN:
            r = get_u16(&a, &out->sync_maxlen); break;
        case K_IPVS_DAEMON_ATTR_MCAST_GROUP:
            if (a.len < 4) {
                r = -EBADMSG;
            } else {
                memset(&out->mcast_group, 0, sizeof(out->mcast_group));
                memcpy(out->mcast_group.bytes, a.data, 4);
                out->mcast_af = AF_INET;
            }
            break;
        case K_IPVS_DAEMON_ATTR_MCAST_GROUP6:
            r = get_addr(&a, &out->mcast_group);
            out->mcast_af = AF_INET6;
            break;
        case K_IPVS_DAEMON_ATTR_MCAST_PORT:
            /* host byte order (nla_put_u16 in the kernel), not be16 */
            r = get_u16(&a, &out->mcast_port); break;
        case K_IPVS_DAEMON_ATTR_MCAST_TTL:
            r = get_u8(&a, &out->mcast_ttl); break;
        default:
            break;
        }
    }
    if (r < 0)
        return r;
    return have_state ? 0 : -EBADMSG;
}

/* Find the nested top-level attribute `type` of a genl message. */
static int find_nested(const struct nlp_msg *m, uint16_t type,
                       const uint8_t **nb, size_t *nlen)
{
    const uint8_t *b;
    size_t blen, off = 0;
    uint8_t cmd;
    struct nlp_attr a;
    int r, found = 0;

    if ((r = nlp_genl(m, &cmd, &b, &blen)) < 0)
        return r;
    while ((r = nlp_next_attr(b, blen, &off, &a)) > 0) {
        if (a.type == type) {
            *nb = a.data;
            *nlen = a.len;
            found = 1;
        }
    }
    if (r < 0)
        return r;
    return found ? 0 : -EBADMSG;
}

int nlp_parse_service_msg(const struct nlp_msg *m, struct ipvs_service *out)
{
    const uint8_t *nb;
    size_t nlen;
    int r = find_nested(m, K_IPVS_CMD_ATTR_SERVICE, &nb, &nlen);
    return r < 0 ? r : nlp_parse_service(nb, nlen, out);
}

int nlp_parse_dest_msg(const struct nlp_msg *m, uint16_t svc_af, struct ipvs_dest *out)
{
    const uint8_t *nb;
    size_t nlen;
    int r = find_nested(m, K_IPVS_CMD_ATTR_DEST, &nb, &nlen);
    return r < 0 ? r : nlp_parse_dest(nb, nlen, svc_af, out);
}

int nlp_parse_daemon_msg(const struct nlp_msg *m, struct ipvs_daemon *out)
{
    const uint8_t *nb;
    size_t nlen;
    int r = find_nested(m, K_IPVS_CMD_ATTR_DAEMON, &nb, &nlen);
    return r < 0 ? r : nlp_parse_daemon(nb, nlen, out);
}

int nlp_parse_info_msg(const struct nlp_msg *m, struct ipvs_info *out)
{
    const uint8_t *b;
    size_t blen, off = 0;
    uint8_t cmd;
    struct nlp_attr a;
    int r, have_version = 0;

    memset(out, 0, sizeof(*out));
    if ((r = nlp_genl(m, &cmd, &b, &blen)) < 0)
        return r;
    while ((r = nlp_next_attr(b, blen, &off, &a)) > 0) {
        if (a.type == K_IPVS_INFO_ATTR_VERSION) {
            if ((r = get_u32(&a, &out->version)) < 0)
                return r;
            have_version = 1;
        } else if (a.type == K_IPVS_INFO_ATTR_CONN_TAB_SIZE) {
            if ((r = get_u32(&a, &out->conn_tab_size)) < 0)
                return r;
        }
    }
    if (r < 0)
        return r;
    return have_version ? 0 : -EBADMSG;
}

int nlp_parse_config_msg(const struct nlp_msg *m, struct ipvs_timeouts *out)
{
    const uint8_t *b;
    size_t blen, off = 0;
    uint8_t cmd;
    struct nlp_attr a;
    int r = 0;

    memset(out, 0, sizeof(*out));
    if ((r = nlp_genl(m, &cmd, &b, &blen)) < 0)
        return r;
    while (r >= 0 && (r = nlp_next_attr(b, blen, &off, &a)) > 0) {
        switch (a.type) {
        case K_IPVS_CMD_ATTR_TIMEOUT_TCP:     r = get_u32(&a, &out->tcp); break;
        case K_IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: r = get_u32(&a, &out->tcp_fin); break;
        case K_IPVS_CMD_ATTR_TIMEOUT_UDP:     r = get_u32(&a, &out->udp); break;
        default: break;
        }
    }
    return r < 0 ? r : 0;
}
