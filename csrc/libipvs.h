/*
 * libipvs.h - a libipvs-style C API for Linux IPVS.
 *
 * Written for the `ipvs` Python package from the kernel's uapi numbers
 * (include/uapi/linux/ip_vs.h); no dependency beyond libc.
 *
 * Conventions
 *  - Every function returns 0 on success or a negative errno.
 *  - Addresses are stored in network byte order in a 16-byte union; ports in
 *    HOST byte order (the transports convert).
 *  - After a failure, ipvs_errmsg() gives the kernel's extended-ack message for
 *    the last request on that handle ("" when the kernel sent none).
 *  - A handle serializes its callers with an internal mutex, so one handle may
 *    be shared by threads. No function touches Python; all may run without
 *    the GIL.
 *  - fork(): a handle inherited by a child process opens its own socket, in
 *    the namespace the handle was opened in, on its first use in the child;
 *    the child never reads or writes the parent's socket (libipvs.c).
 */
#ifndef LIBIPVS_H
#define LIBIPVS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IPVS_SCHED_NAME_MAX 16   /* incl. NUL, IP_VS_SCHEDNAME_MAXLEN */
#define IPVS_PE_NAME_MAX    16   /* incl. NUL, IP_VS_PENAME_MAXLEN */
#define IPVS_IFNAME_MAX     16   /* incl. NUL, IP_VS_IFNAME_MAXLEN */
#define IPVS_ERRMSG_MAX     256

/* backends */
enum {
    IPVS_BACKEND_AUTO = 0,
    IPVS_BACKEND_NETLINK = 1,
    IPVS_BACKEND_SOCKOPT = 2,
};

/* service flags (IP_VS_SVC_F_*) */
#define IPVS_SVC_F_PERSISTENT 0x0001
#define IPVS_SVC_F_HASHED     0x0002
#define IPVS_SVC_F_ONEPACKET  0x0004
#define IPVS_SVC_F_SCHED1     0x0008
#define IPVS_SVC_F_SCHED2     0x0010
#define IPVS_SVC_F_SCHED3     0x0020

/* forwarding methods (IP_VS_CONN_F_FWD_MASK part of conn_flags) */
#define IPVS_FWD_MASQ   0
#define IPVS_FWD_LOCAL  1
#define IPVS_FWD_TUNNEL 2
#define IPVS_FWD_ROUTE  3
#define IPVS_FWD_BYPASS 4
#define IPVS_FWD_MASK   0x7

/* tunnel types (IP_VS_CONN_F_TUNNEL_TYPE_*) and encapsulation flags */
#define IPVS_TUN_TYPE_IPIP 0
#define IPVS_TUN_TYPE_GUE  1
#define IPVS_TUN_TYPE_GRE  2
#define IPVS_TUN_FLAG_NOCSUM   0x0000
#define IPVS_TUN_FLAG_CSUM     0x0001
#define IPVS_TUN_FLAG_REMCSUM  0x0002

/* daemon states */
#define IPVS_STATE_NONE   0
#define IPVS_STATE_MASTER 1
#define IPVS_STATE_BACKUP 2

union ipvs_addr {
    uint32_t ip;        /* IPv4, network order */
    uint32_t ip6[4];    /* IPv6, network order */
    uint8_t  bytes[16];
};

struct ipvs_stats {
    uint64_t conns, inpkts, outpkts, inbytes, outbytes;
    uint64_t cps, inpps, outpps, inbps, outbps;
};

/* Which stats group a reply carried. */
enum {
    IPVS_STATS_NONE = 0,
    IPVS_STATS_32 = 1,   /* IPVS_*_ATTR_STATS (u32 counters, u64 bytes) */
    IPVS_STATS_64 = 2,   /* IPVS_*_ATTR_STATS64 */
};

struct ipvs_service {
    uint16_t af;                 /* AF_INET / AF_INET6 */
    uint16_t protocol;           /* IPPROTO_TCP/UDP/SCTP; 0 with fwmark */
    union ipvs_addr addr;
    uint16_t port;               /* host order */
    uint32_t fwmark;             /* 0 = address service */
    char sched_name[IPVS_SCHED_NAME_MAX];
    char pe_name[IPVS_PE_NAME_MAX];  /* "" = none */
    uint32_t flags;
    uint32_t flags_mask;         /* requests: which flag bits to set; 0 = ~0 */
    uint32_t timeout;            /* persistence, seconds */
    uint32_t netmask;            /* IPv4: mask in network order; IPv6: prefix length */
    int stats_kind;              /* replies: IPVS_STATS_* */
    struct ipvs_stats stats;
};

struct ipvs_dest {
    uint16_t af;                 /* destination family; 0 = the service's */
    union ipvs_addr addr;
    uint16_t port;               /* host order */
    uint32_t conn_flags;         /* forwarding method in IPVS_FWD_MASK */
    int32_t weight;
    uint32_t u_threshold;
    uint32_t l_threshold;
    uint8_t tun_type;            /* IP_VS_CONN_F_TUNNEL_TYPE_* */
    uint16_t tun_port;           /* host order */
    uint16_t tun_flags;          /* IP_VS_TUNNEL_ENCAP_FLAG_* */
    /* replies only */
    uint32_t activeconns;
    uint32_t inactconns;
    uint32_t persistconns;
    int has_af;                  /* replies: kernel sent ADDR_FAMILY */
    int has_tun;                 /* replies: kernel sent TUN_TYPE */
    int stats_kind;
    struct ipvs_stats stats;
};

struct ipvs_info {
    uint32_t version;            /* (major << 16) | (minor << 8) | patch */
    uint32_t conn_tab_size;
};

struct ipvs_timeouts {           /* seconds; in set requests 0 = leave as is */
    uint32_t tcp;
    uint32_t tcp_fin;
    uint32_t udp;
};

struct ipvs_daemon {
    int state;                   /* IPVS_STATE_MASTER / BACKUP */
    char mcast_ifn[IPVS_IFNAME_MAX];
    uint32_t syncid;
    uint16_t sync_maxlen;        /* 0 = kernel default */
    uint16_t mcast_af;           /* 0 = none given */
    union ipvs_addr mcast_group;
    uint16_t mcast_port;         /* host order, 0 = default */
    uint8_t mcast_ttl;           /* 0 = default */
};

/* One request of a batch. */
enum {
    IPVS_OP_ADD_SERVICE = 1,
    IPVS_OP_UPDATE_SERVICE,
    IPVS_OP_DEL_SERVICE,
    IPVS_OP_ADD_DEST,
    IPVS_OP_UPDATE_DEST,
    IPVS_OP_DEL_DEST,
};

struct ipvs_op {
    int op;                      /* IPVS_OP_* */
    struct ipvs_service svc;
    struct ipvs_dest dest;       /* *_DEST ops only */
    int err;                     /* out: 0 or negative errno */
};

typedef struct ipvs_handle ipvs_handle;

/* Open a handle. backend: IPVS_BACKEND_*; AUTO uses netlink and falls back to
 * sockopt only when the "IPVS" genetlink family does not exist.
 * netns_fd: -1 = the calling thread's namespace, else an fd of a network
 * namespace in which the socket is created; the thread's namespace is restored
 * before returning. If it cannot be restored, returns -ENOTRECOVERABLE.
 * timeout_ms: reply timeout (<= 0: wait forever). */
int ipvs_open(ipvs_handle **out, int backend, int netns_fd, int timeout_ms);
/* The message of the calling thread's last failed ipvs_open ("" if none). */
const char *ipvs_open_errmsg(void);
void ipvs_close(ipvs_handle *h);
int ipvs_backend(const ipvs_handle *h);          /* IPVS_BACKEND_NETLINK/SOCKOPT */
const char *ipvs_errmsg(const ipvs_handle *h);   /* extack of the last failure */
int ipvs_set_timeout(ipvs_handle *h, int timeout_ms);
int ipvs_fd(const ipvs_handle *h);
/* Optional interrupt check: when a wait for the kernel's reply is interrupted
 * by a signal (EINTR), cb(arg) is called (cb NULL: none, the wait resumes).
 * A nonzero result aborts the call with -EINTR; the socket stays usable (a
 * later request skips the abandoned request's replies by sequence number).
 * Without a check, or when it returns 0, EINTR is retried until the deadline. */
int ipvs_set_interrupt_check(ipvs_handle *h, int (*cb)(void *arg), void *arg);
/* Is network interface ifname up in the handle's namespace? 1 / 0, or a
 * negative errno (-ENODEV: no such interface). For error messages. */
int ipvs_link_up(ipvs_handle *h, const char *ifname);

int ipvs_get_info(ipvs_handle *h, struct ipvs_info *out);

int ipvs_add_service(ipvs_handle *h, const struct ipvs_service *svc);
int ipvs_update_service(ipvs_handle *h, const struct ipvs_service *svc);
int ipvs_del_service(ipvs_handle *h, const struct ipvs_service *svc);
int ipvs_get_service(ipvs_handle *h, const struct ipvs_service *key,
                     struct ipvs_service *out);
/* *out is malloc'ed (free with ipvs_free); *n entries. */
int ipvs_get_services(ipvs_handle *h, struct ipvs_service **out, size_t *n);

int ipvs_add_dest(ipvs_handle *h, const struct ipvs_service *svc,
                  const struct ipvs_dest *dest);
int ipvs_update_dest(ipvs_handle *h, const struct ipvs_service *svc,
                     const struct ipvs_dest *dest);
int ipvs_del_dest(ipvs_handle *h, const struct ipvs_service *svc,
                  const struct ipvs_dest *dest);
int ipvs_get_dests(ipvs_handle *h, const struct ipvs_service *svc,
                   struct ipvs_dest **out, size_t *n);

int ipvs_flush(ipvs_handle *h);
int ipvs_zero(ipvs_handle *h, const struct ipvs_service *svc);  /* NULL = all */

int ipvs_get_timeouts(ipvs_handle *h, struct ipvs_timeouts *out);
int ipvs_set_timeouts(ipvs_handle *h, const struct ipvs_timeouts *to);

/* out must have room for 2 entries; *n = number of running daemons. */
int ipvs_get_daemons(ipvs_handle *h, struct ipvs_daemon *out, size_t *n);
int ipvs_start_daemon(ipvs_handle *h, const struct ipvs_daemon *d);
int ipvs_stop_daemon(ipvs_handle *h, int state);

/* Send n requests in as few syscalls as the socket buffers allow. Each op's
 * err is set. Returns 0 when the transport worked (individual failures are in
 * ops[i].err), or a negative errno when the transport itself failed (then ops
 * whose err is 1 were not confirmed either way). */
int ipvs_batch(ipvs_handle *h, struct ipvs_op *ops, size_t n);

/* Read /proc/net/NAME as seen from the handle's network namespace (e.g.
 * "ip_vs_conn", "ip_vs_stats64"). *out is malloc'ed and NUL-terminated. */
int ipvs_read_proc_net(ipvs_handle *h, const char *name, char **out, size_t *len);

void ipvs_free(void *p);

#ifdef IPVS_TEST_HOOKS
/* --- test builds only (make test-hooks): never in a release wheel.
 * The family name netlink resolves instead of "IPVS" is read from the
 * environment variable IPVS_TEST_NETLINK_FAMILY (nlio.c), so that a test
 * can simulate a kernel without the family. ipvs_test_swap_fd (handle.c)
 * puts fd in the place of the handle's socket and returns the old one. */
#define IPVS_TEST_BUILD 1
int ipvs_test_swap_fd(ipvs_handle *h, int fd);
#else
#define IPVS_TEST_BUILD 0         /* the Cython module's TEST_BUILD */
#endif

/* Debug builds (-DIPVS_DEBUG_ALLOC, see alloc.h): the number of blocks the
 * library allocated and freed so far. Other builds: -ENOSYS (both set to 0). */
int ipvs_debug_alloc_counts(long *allocs, long *frees);

#ifdef IPVS_CAPTURE
/* Corpus capture only (fuzz/capture.c): called with every raw reply buffer,
 * netlink datagrams and sockopt GET results alike (defined in handle.c). */
extern void (*ipvs_debug_rx_hook)(const void *buf, size_t len);
#endif

#ifdef __cplusplus
}
#endif
#endif
