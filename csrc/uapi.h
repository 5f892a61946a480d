/*
 * uapi.h - the kernel interface numbers the netlink transport needs, written
 * out here (from include/uapi/linux/ip_vs.h, netlink.h, genetlink.h) so the
 * build never depends on how new the build host's kernel headers are.
 * Names carry a K_ prefix so they never clash with the system headers.
 */
#ifndef IPVS_UAPI_H
#define IPVS_UAPI_H

#include <stdint.h>

/* ---- netlink basics (linux/netlink.h) ---- */
#define K_NETLINK_GENERIC   16
#define K_SOL_NETLINK       270
#define K_NETLINK_CAP_ACK   10
#define K_NETLINK_EXT_ACK   11

struct k_nlmsghdr {
    uint32_t nlmsg_len;
    uint16_t nlmsg_type;
    uint16_t nlmsg_flags;
    uint32_t nlmsg_seq;
    uint32_t nlmsg_pid;
};

struct k_nlattr {
    uint16_t nla_len;
    uint16_t nla_type;
};

/* payload of NLMSG_ERROR: the errno, then the request's header */
struct k_nlmsgerr {
    int32_t error;
    struct k_nlmsghdr msg;
};

struct k_genlmsghdr {
    uint8_t cmd;
    uint8_t version;
    uint16_t reserved;
};

#define K_NLMSG_ALIGNTO     4u
#define K_NLMSG_ALIGN(len)  (((len) + K_NLMSG_ALIGNTO - 1) & ~(size_t)(K_NLMSG_ALIGNTO - 1))
#define K_NLMSG_HDRLEN      ((size_t)sizeof(struct k_nlmsghdr))   /* 16 */
#define K_NLA_ALIGN(len)    (((len) + 3) & ~(size_t)3)
#define K_NLA_HDRLEN        ((size_t)sizeof(struct k_nlattr))     /* 4 */
#define K_GENL_HDRLEN       ((size_t)sizeof(struct k_genlmsghdr)) /* 4 */
#define K_NLA_F_NESTED        0x8000
#define K_NLA_F_NET_BYTEORDER 0x4000
#define K_NLA_TYPE_MASK       0x3fff

#define K_NLMSG_NOOP     1
#define K_NLMSG_ERROR    2
#define K_NLMSG_DONE     3
#define K_NLMSG_OVERRUN  4
#define K_NLMSG_MIN_TYPE 0x10

#define K_NLM_F_REQUEST   0x01
#define K_NLM_F_MULTI     0x02
#define K_NLM_F_ACK       0x04
#define K_NLM_F_DUMP      0x300   /* ROOT | MATCH */
#define K_NLM_F_CAPPED    0x100   /* in NLMSG_ERROR: request was capped */
#define K_NLM_F_ACK_TLVS  0x200   /* in NLMSG_ERROR/DONE: extack TLVs follow */

#define K_NLMSGERR_ATTR_MSG 1     /* string */

/* ---- generic netlink controller (linux/genetlink.h) ---- */
#define K_GENL_ID_CTRL            0x10
#define K_CTRL_CMD_NEWFAMILY      1
#define K_CTRL_CMD_GETFAMILY      3
#define K_CTRL_ATTR_FAMILY_ID     1   /* u16 */
#define K_CTRL_ATTR_FAMILY_NAME   2   /* string */
#define K_CTRL_ATTR_VERSION       3   /* u32 */

/* ---- IPVS generic netlink family (linux/ip_vs.h) ---- */
#define K_IPVS_GENL_NAME     "IPVS"
#define K_IPVS_GENL_VERSION  1

enum {
    K_IPVS_CMD_NEW_SERVICE = 1,
    K_IPVS_CMD_SET_SERVICE = 2,
    K_IPVS_CMD_DEL_SERVICE = 3,
    K_IPVS_CMD_GET_SERVICE = 4,
    K_IPVS_CMD_NEW_DEST = 5,
    K_IPVS_CMD_SET_DEST = 6,
    K_IPVS_CMD_DEL_DEST = 7,
    K_IPVS_CMD_GET_DEST = 8,
    K_IPVS_CMD_NEW_DAEMON = 9,
    K_IPVS_CMD_DEL_DAEMON = 10,
    K_IPVS_CMD_GET_DAEMON = 11,
    K_IPVS_CMD_SET_CONFIG = 12,
    K_IPVS_CMD_GET_CONFIG = 13,
    K_IPVS_CMD_SET_INFO = 14,
    K_IPVS_CMD_GET_INFO = 15,
    K_IPVS_CMD_ZERO = 16,
    K_IPVS_CMD_FLUSH = 17,
};

/* top level attributes */
enum {
    K_IPVS_CMD_ATTR_SERVICE = 1,          /* nested */
    K_IPVS_CMD_ATTR_DEST = 2,             /* nested */
    K_IPVS_CMD_ATTR_DAEMON = 3,           /* nested */
    K_IPVS_CMD_ATTR_TIMEOUT_TCP = 4,      /* u32 */
    K_IPVS_CMD_ATTR_TIMEOUT_TCP_FIN = 5,  /* u32 */
    K_IPVS_CMD_ATTR_TIMEOUT_UDP = 6,      /* u32 */
};

/* inside K_IPVS_CMD_ATTR_SERVICE */
enum {
    K_IPVS_SVC_ATTR_AF = 1,          /* u16 */
    K_IPVS_SVC_ATTR_PROTOCOL = 2,    /* u16 */
    K_IPVS_SVC_ATTR_ADDR = 3,        /* 16 bytes (union nf_inet_addr) */
    K_IPVS_SVC_ATTR_PORT = 4,        /* be16 */
    K_IPVS_SVC_ATTR_FWMARK = 5,      /* u32 */
    K_IPVS_SVC_ATTR_SCHED_NAME = 6,  /* NUL string, < 16 */
    K_IPVS_SVC_ATTR_FLAGS = 7,       /* struct { u32 flags; u32 mask; } */
    K_IPVS_SVC_ATTR_TIMEOUT = 8,     /* u32 */
    K_IPVS_SVC_ATTR_NETMASK = 9,     /* be32 mask (v4) / prefix length (v6) */
    K_IPVS_SVC_ATTR_STATS = 10,      /* nested stats */
    K_IPVS_SVC_ATTR_PE_NAME = 11,    /* NUL string, < 16 */
    K_IPVS_SVC_ATTR_STATS64 = 12,    /* nested stats, all u64 */
};

/* inside K_IPVS_CMD_ATTR_DEST */
enum {
    K_IPVS_DEST_ATTR_ADDR = 1,           /* 16 bytes */
    K_IPVS_DEST_ATTR_PORT = 2,           /* be16 */
    K_IPVS_DEST_ATTR_FWD_METHOD = 3,     /* u32 */
    K_IPVS_DEST_ATTR_WEIGHT = 4,         /* u32 (signed int in the kernel) */
    K_IPVS_DEST_ATTR_U_THRESH = 5,       /* u32 */
    K_IPVS_DEST_ATTR_L_THRESH = 6,       /* u32 */
    K_IPVS_DEST_ATTR_ACTIVE_CONNS = 7,   /* u32 */
    K_IPVS_DEST_ATTR_INACT_CONNS = 8,    /* u32 */
    K_IPVS_DEST_ATTR_PERSIST_CONNS = 9,  /* u32 */
    K_IPVS_DEST_ATTR_STATS = 10,         /* nested */
    K_IPVS_DEST_ATTR_ADDR_FAMILY = 11,   /* u16 */
    K_IPVS_DEST_ATTR_STATS64 = 12,       /* nested */
    K_IPVS_DEST_ATTR_TUN_TYPE = 13,      /* u8 */
    K_IPVS_DEST_ATTR_TUN_PORT = 14,      /* be16 */
    K_IPVS_DEST_ATTR_TUN_FLAGS = 15,     /* u16 */
};

/* inside K_IPVS_CMD_ATTR_DAEMON */
enum {
    K_IPVS_DAEMON_ATTR_STATE = 1,         /* u32 */
    K_IPVS_DAEMON_ATTR_MCAST_IFN = 2,     /* NUL string, < 16 */
    K_IPVS_DAEMON_ATTR_SYNC_ID = 3,       /* u32 */
    K_IPVS_DAEMON_ATTR_SYNC_MAXLEN = 4,   /* u16 */
    K_IPVS_DAEMON_ATTR_MCAST_GROUP = 5,   /* be32 */
    K_IPVS_DAEMON_ATTR_MCAST_GROUP6 = 6,  /* 16 bytes */
    K_IPVS_DAEMON_ATTR_MCAST_PORT = 7,    /* u16, HOST byte order */
    K_IPVS_DAEMON_ATTR_MCAST_TTL = 8,     /* u8 */
};

/* inside *_ATTR_STATS / *_ATTR_STATS64 */
enum {
    K_IPVS_STATS_ATTR_CONNS = 1,
    K_IPVS_STATS_ATTR_INPKTS = 2,
    K_IPVS_STATS_ATTR_OUTPKTS = 3,
    K_IPVS_STATS_ATTR_INBYTES = 4,
    K_IPVS_STATS_ATTR_OUTBYTES = 5,
    K_IPVS_STATS_ATTR_CPS = 6,
    K_IPVS_STATS_ATTR_INPPS = 7,
    K_IPVS_STATS_ATTR_OUTPPS = 8,
    K_IPVS_STATS_ATTR_INBPS = 9,
    K_IPVS_STATS_ATTR_OUTBPS = 10,
    K_IPVS_STATS_ATTR_PAD = 11,
};

/* GET_INFO reply (top level) */
enum {
    K_IPVS_INFO_ATTR_VERSION = 1,        /* u32 */
    K_IPVS_INFO_ATTR_CONN_TAB_SIZE = 2,  /* u32 */
};

/* tunnel types / flags */
#define K_IP_VS_TUNNEL_TYPE_IPIP 0
#define K_IP_VS_TUNNEL_TYPE_GUE  1
#define K_IP_VS_TUNNEL_TYPE_GRE  2
#define K_IP_VS_TUNNEL_ENCAP_FLAG_CSUM    0x1
#define K_IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM 0x2

#endif
