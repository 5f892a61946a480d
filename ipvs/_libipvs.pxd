# The C side of ipvs/_libipvs.pyx, declared (no C is written in the .pyx):
#  1. csrc/libipvs.h, the C library's API (mirrors the header; keep in step),
#  2. csrc/pyrec.h, the record helpers (the Python C API, for the module only),
#  3. the few system and Python headers the module uses,
#  4. the module's own conversions between model objects and the structs of
#     (1), cimported by the private test module ipvs/_libipvs_test.pyx.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, uint64_t
from cpython.object cimport PyObject

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
        IPVS_TEST_BUILD     # 1 in a -DIPVS_TEST_HOOKS build, else 0

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


cdef extern from "pyrec.h":
    object ipvs_rec_alloc(object cls)
    Py_ssize_t ipvs_rec_offset(object descr)
    void ipvs_rec_put(object obj, Py_ssize_t off, object v)
    PyObject *ipvs_rec_get(object obj, Py_ssize_t off)

cdef extern from "Python.h":
    # declared without an exception value: the pending exception (e.g.
    # KeyboardInterrupt) is left set for the caller to raise after the C call
    int _check_signals "PyErr_CheckSignals" ()

cdef extern from "arpa/inet.h" nogil:
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)

cdef extern from "sys/socket.h":
    enum:
        C_AF_INET "AF_INET"
        C_AF_INET6 "AF_INET6"


# --- the module's conversions (defined in _libipvs.pyx) ---------------------

cdef class _AddrCache:
    cdef dict v4
    cdef dict v6
    cdef dict ports
    cdef object port(self, uint16_t p)
    cdef object get(self, int af, const ipvs_addr *a)

cdef object _v4(object ip)
cdef bint _v4_fast() noexcept
cdef object _svc_from_c(const ipvs_service *s, _AddrCache cache)
cdef int _svc_to_c(object svc, ipvs_service *c) except -1
cdef object _dest_from_c(const ipvs_dest *d, int svc_af, _AddrCache cache)
cdef int _dest_to_c(object dest, ipvs_dest *c) except -1
cdef object _daemon_from_c(const ipvs_daemon *d)
