# Declarations of csrc/libipvs.h (mirrors the header; keep in step with it).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, uint64_t

cdef extern from "libipvs.h" nogil:
    enum:
        IPVS_SCHED_NAME_MAX
        IPVS_PE_NAME_MAX
        IPVS_IFNAME_MAX
        IPVS_ERRMSG_MAX
        IPVS_SVC_F_PERSISTENT
        IPVS_SVC_F_HASHED
        IPVS_SVC_F_ONEPACKET
        IPVS_SVC_F_SCHED1
        IPVS_SVC_F_SCHED2
        IPVS_SVC_F_SCHED3
        IPVS_FWD_MASQ
        IPVS_FWD_LOCAL
        IPVS_FWD_TUNNEL
        IPVS_FWD_ROUTE
        IPVS_FWD_BYPASS
        IPVS_TUN_TYPE_IPIP
        IPVS_TUN_TYPE_GUE
        IPVS_TUN_TYPE_GRE
        IPVS_TUN_FLAG_NOCSUM
        IPVS_TUN_FLAG_CSUM
        IPVS_TUN_FLAG_REMCSUM
        IPVS_STATE_NONE
        IPVS_STATE_MASTER
        IPVS_STATE_BACKUP
        IPVS_BACKEND_AUTO
        IPVS_BACKEND_NETLINK
        IPVS_BACKEND_SOCKOPT
        IPVS_STATS_NONE
        IPVS_STATS_32
        IPVS_STATS_64
        IPVS_FWD_MASK
        IPVS_OP_ADD_SERVICE
        IPVS_OP_UPDATE_SERVICE
        IPVS_OP_DEL_SERVICE
        IPVS_OP_ADD_DEST
        IPVS_OP_UPDATE_DEST
        IPVS_OP_DEL_DEST

    union ipvs_addr:
        uint32_t ip
        uint32_t ip6[4]
        uint8_t bytes[16]

    struct ipvs_stats:
        uint64_t conns, inpkts, outpkts, inbytes, outbytes
        uint64_t cps, inpps, outpps, inbps, outbps

    struct ipvs_service:
        uint16_t af
        uint16_t protocol
        ipvs_addr addr
        uint16_t port
        uint32_t fwmark
        char sched_name[IPVS_SCHED_NAME_MAX]
        char pe_name[IPVS_PE_NAME_MAX]
        uint32_t flags
        uint32_t flags_mask
        uint32_t timeout
        uint32_t netmask
        int stats_kind
        ipvs_stats stats

    struct ipvs_dest:
        uint16_t af
        ipvs_addr addr
        uint16_t port
        uint32_t conn_flags
        int32_t weight
        uint32_t u_threshold
        uint32_t l_threshold
        uint8_t tun_type
        uint16_t tun_port
        uint16_t tun_flags
        uint32_t activeconns
        uint32_t inactconns
        uint32_t persistconns
        int has_af
        int has_tun
        int stats_kind
        ipvs_stats stats

    struct ipvs_info:
        uint32_t version
        uint32_t conn_tab_size

    struct ipvs_timeouts:
        uint32_t tcp
        uint32_t tcp_fin
        uint32_t udp

    struct ipvs_daemon:
        int state
        char mcast_ifn[IPVS_IFNAME_MAX]
        uint32_t syncid
        uint16_t sync_maxlen
        uint16_t mcast_af
        ipvs_addr mcast_group
        uint16_t mcast_port
        uint8_t mcast_ttl

    struct ipvs_op:
        int op
        ipvs_service svc
        ipvs_dest dest
        int err

    ctypedef struct ipvs_handle:
        pass

    int ipvs_open(ipvs_handle **out, int backend, int netns_fd, int timeout_ms)
    const char *ipvs_open_errmsg()
    void ipvs_close(ipvs_handle *h)
    int ipvs_backend(const ipvs_handle *h)
    const char *ipvs_errmsg(const ipvs_handle *h)
    int ipvs_set_timeout(ipvs_handle *h, int timeout_ms)
    int ipvs_fd(const ipvs_handle *h)
    int ipvs_set_interrupt_check(ipvs_handle *h, int (*cb)(void *arg) noexcept, void *arg)
    int ipvs_link_up(ipvs_handle *h, const char *ifname)
    int ipvs_get_info(ipvs_handle *h, ipvs_info *out)
    int ipvs_add_service(ipvs_handle *h, const ipvs_service *svc)
    int ipvs_update_service(ipvs_handle *h, const ipvs_service *svc)
    int ipvs_del_service(ipvs_handle *h, const ipvs_service *svc)
    int ipvs_get_service(ipvs_handle *h, const ipvs_service *key, ipvs_service *out)
    int ipvs_get_services(ipvs_handle *h, ipvs_service **out, size_t *n)
    int ipvs_add_dest(ipvs_handle *h, const ipvs_service *svc, const ipvs_dest *dest)
    int ipvs_update_dest(ipvs_handle *h, const ipvs_service *svc, const ipvs_dest *dest)
    int ipvs_del_dest(ipvs_handle *h, const ipvs_service *svc, const ipvs_dest *dest)
    int ipvs_get_dests(ipvs_handle *h, const ipvs_service *svc, ipvs_dest **out, size_t *n)
    int ipvs_flush(ipvs_handle *h)
    int ipvs_zero(ipvs_handle *h, const ipvs_service *svc)
    int ipvs_get_timeouts(ipvs_handle *h, ipvs_timeouts *out)
    int ipvs_set_timeouts(ipvs_handle *h, const ipvs_timeouts *to)
    int ipvs_get_daemons(ipvs_handle *h, ipvs_daemon *out, size_t *n)
    int ipvs_start_daemon(ipvs_handle *h, const ipvs_daemon *d)
    int ipvs_stop_daemon(ipvs_handle *h, int state)
    int ipvs_batch(ipvs_handle *h, ipvs_op *ops, size_t n)
    int ipvs_read_proc_net(ipvs_handle *h, const char *name, char **out, size_t *len)
    void ipvs_free(void *p)
    int ipvs_debug_alloc_counts(long *allocs, long *frees)
