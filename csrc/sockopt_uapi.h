/*
 * sockopt_uapi.h - our own declarations of the kernel's legacy IPVS socket
 * option interface (getsockopt/setsockopt on a raw IPv4 socket, level
 * IPPROTO_IP). Written from the numbers and layouts of the kernel's uapi
 * (include/uapi/linux/ip_vs.h); deliberately independent of host headers.
 *
 * Layouts follow the C ABI of the platform, as the kernel's do: the only
 * ABI-dependent member is the 64-bit byte counter in the stats struct (8-byte
 * aligned on LP64 and most 32-bit ABIs, 4-byte aligned on i386).
 */
#ifndef IPVS_SOCKOPT_UAPI_H
#define IPVS_SOCKOPT_UAPI_H

#include <stddef.h>
#include <stdint.h>

#define SO_IPVS_BASE 1152 /* 64 + 1024 + 64 */

/* setsockopt commands */
#define SO_IPVS_SET_ADD          (SO_IPVS_BASE + 2)
#define SO_IPVS_SET_EDIT         (SO_IPVS_BASE + 3)
#define SO_IPVS_SET_DEL          (SO_IPVS_BASE + 4)
#define SO_IPVS_SET_FLUSH        (SO_IPVS_BASE + 5)
#define SO_IPVS_SET_ADDDEST      (SO_IPVS_BASE + 7)
#define SO_IPVS_SET_DELDEST      (SO_IPVS_BASE + 8)
#define SO_IPVS_SET_EDITDEST     (SO_IPVS_BASE + 9)
#define SO_IPVS_SET_TIMEOUT      (SO_IPVS_BASE + 10)
#define SO_IPVS_SET_STARTDAEMON  (SO_IPVS_BASE + 11)
#define SO_IPVS_SET_STOPDAEMON   (SO_IPVS_BASE + 12)
#define SO_IPVS_SET_ZERO         (SO_IPVS_BASE + 15)

/* getsockopt commands */
#define SO_IPVS_GET_VERSION      (SO_IPVS_BASE + 0)
#define SO_IPVS_GET_INFO         (SO_IPVS_BASE + 1)
#define SO_IPVS_GET_SERVICES     (SO_IPVS_BASE + 2)
#define SO_IPVS_GET_SERVICE      (SO_IPVS_BASE + 3)
#define SO_IPVS_GET_DESTS        (SO_IPVS_BASE + 4)
#define SO_IPVS_GET_TIMEOUT      (SO_IPVS_BASE + 6)
#define SO_IPVS_GET_DAEMON       (SO_IPVS_BASE + 7)

#define SO_IPVS_VERSION_BUFLEN   64  /* the kernel requires at least this */
#define SO_IPVS_NAMELEN          16  /* scheduler / interface names incl. NUL */

/* connection flags the kernel keeps per destination from a sockopt request
 * (forwarding method, one-packet, netfilter conntrack); other bits read back
 * (e.g. 0x0100 "inactive") are kernel-internal. */
#define SO_IPVS_CONN_F_FWD_MASK   0x0007u
#define SO_IPVS_CONN_F_ONE_PACKET 0x2000u
#define SO_IPVS_CONN_F_NFCT       0x10000u
#define SO_IPVS_CONN_F_DEST_MASK  (SO_IPVS_CONN_F_FWD_MASK | \
                                   SO_IPVS_CONN_F_ONE_PACKET | \
                                   SO_IPVS_CONN_F_NFCT)

/* service in ADD/EDIT/DEL/ZERO and the first part of *DEST requests */
struct so_svc_req {
    uint16_t protocol;
    uint32_t addr;                  /* network order */
    uint16_t port;                  /* network order */
    uint32_t fwmark;
    char sched_name[SO_IPVS_NAMELEN];
    uint32_t flags;
    uint32_t timeout;
    uint32_t netmask;               /* network order */
};

/* destination part of ADDDEST/EDITDEST/DELDEST */
struct so_dest_req {
    uint32_t addr;                  /* network order */
    uint16_t port;                  /* network order */
    uint32_t conn_flags;
    int32_t weight;
    uint32_t u_threshold;
    uint32_t l_threshold;
};

/* the argument of ADDDEST/EDITDEST/DELDEST: both, back to back */
struct so_svcdest_req {
    struct so_svc_req svc;
    struct so_dest_req dest;
};

struct so_stats {
    uint32_t conns;
    uint32_t inpkts;
    uint32_t outpkts;
    uint64_t inbytes;
    uint64_t outbytes;
    uint32_t cps;
    uint32_t inpps;
    uint32_t outpps;
    uint32_t inbps;
    uint32_t outbps;
};

/* GET_INFO reply */
struct so_info {
    uint32_t version;
    uint32_t conn_tab_size;
    uint32_t num_services;          /* IPv4 and IPv6 services of the netns */
};

/* GET_SERVICE argument (key in, entry out) and GET_SERVICES table entry */
struct so_svc_entry {
    uint16_t protocol;
    uint32_t addr;
    uint16_t port;
    uint32_t fwmark;
    char sched_name[SO_IPVS_NAMELEN];
    uint32_t flags;
    uint32_t timeout;
    uint32_t netmask;
    uint32_t num_dests;
    struct so_stats stats;
};

/* GET_DESTS table entry */
struct so_dest_entry {
    uint32_t addr;
    uint16_t port;
    uint32_t conn_flags;
    int32_t weight;
    uint32_t u_threshold;
    uint32_t l_threshold;
    uint32_t activeconns;
    uint32_t inactconns;
    uint32_t persistconns;
    struct so_stats stats;
};

/* GET_DESTS argument: header followed by num_dests entries */
struct so_get_dests {
    uint16_t protocol;
    uint32_t addr;
    uint16_t port;
    uint32_t fwmark;
    uint32_t num_dests;
    struct so_dest_entry entries[];
};

/* GET_SERVICES argument: header followed by num_services entries */
struct so_get_services {
    uint32_t num_services;
    struct so_svc_entry entries[];
};

/* SET_TIMEOUT argument / GET_TIMEOUT reply (seconds) */
struct so_timeouts {
    int32_t tcp;
    int32_t tcp_fin;
    int32_t udp;
};

/* START/STOPDAEMON argument; GET_DAEMON replies two: [0] master, [1] backup */
struct so_daemon {
    int32_t state;
    char mcast_ifn[SO_IPVS_NAMELEN];
    int32_t syncid;
};

/* Layout checks: ABI-independent ones first. */
_Static_assert(sizeof(struct so_svc_req) == 44, "ip_vs_service_user");
_Static_assert(offsetof(struct so_svc_req, addr) == 4, "svc addr");
_Static_assert(offsetof(struct so_svc_req, port) == 8, "svc port");
_Static_assert(offsetof(struct so_svc_req, fwmark) == 12, "svc fwmark");
_Static_assert(offsetof(struct so_svc_req, sched_name) == 16, "svc sched");
_Static_assert(offsetof(struct so_svc_req, flags) == 32, "svc flags");
_Static_assert(offsetof(struct so_svc_req, netmask) == 40, "svc netmask");
_Static_assert(sizeof(struct so_dest_req) == 24, "ip_vs_dest_user");
_Static_assert(offsetof(struct so_dest_req, conn_flags) == 8, "dest flags");
_Static_assert(offsetof(struct so_dest_req, l_threshold) == 20, "dest lthr");
_Static_assert(sizeof(struct so_svcdest_req) == 68, "svc + dest, no padding");
_Static_assert(offsetof(struct so_svcdest_req, dest) == 44, "dest follows svc");
_Static_assert(sizeof(struct so_info) == 12, "ip_vs_getinfo");
_Static_assert(sizeof(struct so_timeouts) == 12, "ip_vs_timeout_user");
_Static_assert(sizeof(struct so_daemon) == 24, "ip_vs_daemon_user");
_Static_assert(offsetof(struct so_daemon, syncid) == 20, "daemon syncid");
_Static_assert(offsetof(struct so_svc_entry, num_dests) == 44, "entry num_dests");
_Static_assert(offsetof(struct so_get_dests, num_dests) == 16, "get_dests num");

/* ABI-dependent: 64-bit counters aligned to 8 (x86-64, arm64, ...) or 4 (i386). */
#define SO_U64_ALIGN _Alignof(uint64_t)
_Static_assert(offsetof(struct so_stats, inbytes) == (SO_U64_ALIGN == 8 ? 16 : 12),
               "stats inbytes");
_Static_assert(sizeof(struct so_stats) == (SO_U64_ALIGN == 8 ? 56 : 48),
               "ip_vs_stats_user");
_Static_assert(offsetof(struct so_svc_entry, stats) == 48, "entry stats");
_Static_assert(sizeof(struct so_svc_entry) == (SO_U64_ALIGN == 8 ? 104 : 96),
               "ip_vs_service_entry");
_Static_assert(offsetof(struct so_dest_entry, stats) == (SO_U64_ALIGN == 8 ? 40 : 36),
               "dest entry stats");
_Static_assert(sizeof(struct so_dest_entry) == (SO_U64_ALIGN == 8 ? 96 : 84),
               "ip_vs_dest_entry");
_Static_assert(sizeof(struct so_get_dests) == (SO_U64_ALIGN == 8 ? 24 : 20),
               "ip_vs_get_dests");
_Static_assert(sizeof(struct so_get_services) == (SO_U64_ALIGN == 8 ? 8 : 4),
               "ip_vs_get_services");

#endif
