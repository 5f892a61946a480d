/*
 * nlbuild.c - building generic-netlink requests of the IPVS family (see
 * nlbuild.h); the mirror of nlparse.c. libc only, from the uapi numbers.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "nlbuild.h"
#include "uapi.h"

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

size_t nlb_msg_begin(struct nlb *b, uint16_t type, uint16_t flags,
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

void nlb_msg_end(struct nlb *b, size_t start)
{
    uint32_t len = (uint32_t)(b->len - start);
    if (!b->full)
        memcpy(b->buf + start + offsetof(struct k_nlmsghdr, nlmsg_len), &len, sizeof(len));
}

void nlb_put(struct nlb *b, uint16_t type, const void *data, size_t len)
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

void nlb_u8(struct nlb *b, uint16_t t, uint8_t v) { nlb_put(b, t, &v, 1); }
void nlb_u16(struct nlb *b, uint16_t t, uint16_t v) { nlb_put(b, t, &v, 2); }
void nlb_u32(struct nlb *b, uint16_t t, uint32_t v) { nlb_put(b, t, &v, 4); }

void nlb_be16(struct nlb *b, uint16_t t, uint16_t v)
{
    uint8_t be[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    nlb_put(b, t, be, 2);
}

void nlb_str(struct nlb *b, uint16_t t, const char *s, size_t n)
{
    nlb_put(b, t, s, n + 1);
}

size_t nlb_nest_begin(struct nlb *b, uint16_t type)
{
    size_t start = b->len;
    nlb_put(b, (uint16_t)(type | K_NLA_F_NESTED), NULL, 0);
    return start;
}

void nlb_nest_end(struct nlb *b, size_t start)
{
    uint16_t len;
    if (b->full)
        return;
    if (b->len - start > 0xffff) {
        b->full = 1;
        return;
    }
    len = (uint16_t)(b->len - start);
    memcpy(b->buf + start + offsetof(struct k_nlattr, nla_len), &len, sizeof(len));
}

void nlb_set_flags(unsigned char *msg, uint16_t add)
{
    uint16_t f;
    memcpy(&f, msg + offsetof(struct k_nlmsghdr, nlmsg_flags), sizeof(f));
    f |= add;
    memcpy(msg + offsetof(struct k_nlmsghdr, nlmsg_flags), &f, sizeof(f));
}

void nlb_set_seq_type(unsigned char *msg, uint32_t seq, uint16_t type)
{
    memcpy(msg + offsetof(struct k_nlmsghdr, nlmsg_type), &type, sizeof(type));
    memcpy(msg + offsetof(struct k_nlmsghdr, nlmsg_seq), &seq, sizeof(seq));
}

int nlb_name_len(const char *s, size_t cap)
{
    const char *nul = memchr(s, 0, cap);
    return nul ? (int)(nul - s) : -1;
}

int nlb_service(struct nlb *b, const struct ipvs_service *s, int full)
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
        int sl = nlb_name_len(s->sched_name, sizeof(s->sched_name));
        int pl = nlb_name_len(s->pe_name, sizeof(s->pe_name));
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

void nlb_dest(struct nlb *b, const struct ipvs_dest *d, int full)
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

int nlb_daemon(struct nlb *b, const struct ipvs_daemon *d)
{
    int il = nlb_name_len(d->mcast_ifn, sizeof(d->mcast_ifn));
    size_t nest;

    if (il < 0)
        return -EINVAL;
    if (d->mcast_af != 0 && d->mcast_af != AF_INET && d->mcast_af != AF_INET6)
        return -EAFNOSUPPORT;
    nest = nlb_nest_begin(b, K_IPVS_CMD_ATTR_DAEMON);
    nlb_u32(b, K_IPVS_DAEMON_ATTR_STATE, (uint32_t)d->state);
    nlb_str(b, K_IPVS_DAEMON_ATTR_MCAST_IFN, d->mcast_ifn, (size_t)il);
    nlb_u32(b, K_IPVS_DAEMON_ATTR_SYNC_ID, d->syncid);
    /* the optional ones only when given: older kernels lack them */
    if (d->sync_maxlen)
        nlb_u16(b, K_IPVS_DAEMON_ATTR_SYNC_MAXLEN, d->sync_maxlen);
    if (d->mcast_af == AF_INET)
        nlb_put(b, K_IPVS_DAEMON_ATTR_MCAST_GROUP, d->mcast_group.bytes, 4);
    else if (d->mcast_af == AF_INET6)
        nlb_put(b, K_IPVS_DAEMON_ATTR_MCAST_GROUP6, d->mcast_group.bytes, 16);
    /* NB: host byte order, unlike the other ports (the kernel uses
     * nla_get_u16/nla_put_u16 for it) */
    if (d->mcast_port)
        nlb_u16(b, K_IPVS_DAEMON_ATTR_MCAST_PORT, d->mcast_port);
    if (d->mcast_ttl)
        nlb_u8(b, K_IPVS_DAEMON_ATTR_MCAST_TTL, d->mcast_ttl);
    nlb_nest_end(b, nest);
    return 0;
}

int nlb_op(struct nlb *b, uint16_t fam, uint32_t seq, uint16_t flags,
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
    r = nlb_service(b, &op->svc, svc_full);
    if (r < 0) {
        b->len = start;
        return r;
    }
    if (has_dest)
        nlb_dest(b, &op->dest, dest_full);
    nlb_msg_end(b, start);
    return 0;
}
