# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The only module that touches C: converts model objects <-> libipvs structs,
releases the GIL around kernel I/O, and sends every return code through one
check function (``_check``) that asks :func:`ipvs.errors.from_errno` for the
exception. This module words no message and maps no errno: it hands over the
return code, the C layer's message and what the call was about. The errno
names below (libc.errno) steer control flow only: EINTR (a signal handler's
exception is pending), ESRCH (a service gone between two dumps), EIO (a batch
call left unconfirmed by a failed transport).

fork(): handled below this module, in csrc/libipvs.c (a child's first call
opens the child's own socket in the handle's namespace).

No C is written here: every C declaration is in _libipvs.pxd, every line of C
in csrc/. The .pxd also declares this module's conversions (the cdef
functions and _AddrCache below), which the private test module
ipvs/_libipvs_test.pyx cimports; the release extension has no entry point
for tests (see docs/DEVELOPING.md, "The C layer")."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, uint64_t
from libc.string cimport memset, memcpy, memcmp, strlen
from libc.stdlib cimport malloc, free, qsort, bsearch
from libc.errno cimport EINTR, ESRCH, EIO
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_Occurred
from cpython.object cimport PyObject

import socket as _socket
import ipaddress as _ipaddress

from ipvs import errors as _errors
from ipvs._model import (Service, Destination, Stats, Daemon, Timeouts, Protocol, Forward,
                         ServiceFlags, TunnelType, TunnelFlags, DaemonState)

# True only in a -DIPVS_TEST_HOOKS build (make test-hooks): its netlink
# transport reads IPVS_TEST_NETLINK_FAMILY. Never in a release wheel.
TEST_BUILD = bool(IPVS_TEST_BUILD)

cdef object AF_INET = _socket.AF_INET
cdef object AF_INET6 = _socket.AF_INET6
cdef object IPv4Address = _ipaddress.IPv4Address
cdef object IPv6Address = _ipaddress.IPv6Address
cdef object from_errno = _errors.from_errno

cdef dict _PROTO = {int(p): p for p in Protocol}
cdef object _TCP = Protocol.TCP
cdef tuple _FORWARD = tuple(Forward)
cdef tuple _TUNTYPE_T = (TunnelType(IPVS_TUN_TYPE_IPIP), TunnelType(IPVS_TUN_TYPE_GUE),
                         TunnelType(IPVS_TUN_TYPE_GRE))
cdef dict _SVCFLAGS = {}
cdef dict _TUNFLAGS = {}

# Records read from the kernel are built without validation (the kernel's
# values are trusted to be in range): allocated like object.__new__ does and
# their __slots__ filled directly, at the member descriptors' offsets.
# Measured (host, CPython 3.11): a Destination through this path, C struct
# to Python and back included, 0.9 us; through its constructor 8.9 us, so a
# listing of 11,000 objects saves about 0.09 s. Kept only with its guards:
# _slot_offsets() below refuses to import if a field is not a slot, and
# tests/unit/test_house_unit.py fails if the objects built here differ in
# any way (equality, hash, repr, pickling) from the constructors' objects
# (through the private test module, ipvs/_libipvs_test.pyx). The C of it:
# csrc/pyrec.h (ipvs_rec_alloc, ipvs_rec_offset, ipvs_rec_put, ipvs_rec_get).


cdef int _slot_offsets(object cls, Py_ssize_t *out, int n) except -1:
    cdef int i
    fields = cls._field_names
    if len(fields) != n:
        raise ImportError("ipvs._libipvs: %s has %d fields, expected %d"
                          % (cls.__name__, len(fields), n))
    for i in range(n):
        out[i] = ipvs_rec_offset(cls.__dict__[fields[i]])
        if out[i] <= 0:
            raise ImportError("ipvs._libipvs: %s.%s is not a slot" % (cls.__name__, fields[i]))
    return 0


cdef Py_ssize_t _SVC_OFF[11]
cdef Py_ssize_t _DEST_OFF[14]
cdef Py_ssize_t _STATS_OFF[10]
_slot_offsets(Service, _SVC_OFF, 11)
_slot_offsets(Destination, _DEST_OFF, 14)
_slot_offsets(Stats, _STATS_OFF, 10)
cdef object _new = object.__new__
# requests per slice of Handle.batch (about 300 KB of C structs)
cdef size_t _BATCH_SLICE = 1024
# All-zero counters (every idle service and destination) share one Stats:
# records are immutable, so sharing an equal one changes nothing visible.
cdef object _ZERO_STATS = Stats()

BACKEND_NAMES = {IPVS_BACKEND_NETLINK: "netlink", IPVS_BACKEND_SOCKOPT: "sockopt"}
BACKENDS = {"auto": IPVS_BACKEND_AUTO, "netlink": IPVS_BACKEND_NETLINK,
            "sockopt": IPVS_BACKEND_SOCKOPT}

OPS = {
    "add_service": IPVS_OP_ADD_SERVICE,
    "update_service": IPVS_OP_UPDATE_SERVICE,
    "delete_service": IPVS_OP_DEL_SERVICE,
    "add_destination": IPVS_OP_ADD_DEST,
    "update_destination": IPVS_OP_UPDATE_DEST,
    "delete_destination": IPVS_OP_DEL_DEST,
}


cdef object _svc_flags(uint32_t flags):
    flags &= ~(<uint32_t>IPVS_SVC_F_HASHED)   # kernel-internal state: see _model.py
    r = _SVCFLAGS.get(flags)
    if r is None:
        r = _SVCFLAGS[flags] = ServiceFlags(flags)
    return r


cdef object _tun_flags(uint16_t flags):
    r = _TUNFLAGS.get(flags)
    if r is None:
        r = _TUNFLAGS[flags] = TunnelFlags(flags)
    return r


cdef class _AddrCache:
    """Shares one ipaddress object per distinct address, and one int per
    distinct port, within one listing."""
    # (its attributes are declared in _libipvs.pxd)

    def __cinit__(self):
        self.v4 = {}
        self.v6 = {}
        self.ports = {}

    cdef object port(self, uint16_t p):
        if p < 256:
            return p        # CPython's small ints are shared already
        r = self.ports.get(p)
        if r is None:
            r = self.ports[p] = p
        return r

    cdef object get(self, int af, const ipvs_addr *a):
        cdef uint32_t ip
        if af == C_AF_INET6:
            key = PyBytes_FromStringAndSize(<const char *>a.bytes, sizeof(ipvs_addr))
            r = self.v6.get(key)
            if r is None:
                r = self.v6[key] = IPv6Address(key)
            return r
        ip = ntohl(a.ip)
        key = ip
        r = self.v4.get(key)
        if r is None:
            r = self.v4[key] = _v4(key)
        return r


cdef object _addr(int af, const ipvs_addr *a):
    if af == C_AF_INET6:
        return IPv6Address(PyBytes_FromStringAndSize(<const char *>a.bytes, sizeof(ipvs_addr)))
    return _v4(ntohl(a.ip))


# IPv4Address(ip) for an int known to be in range, without its Python-level
# __init__ (a third of a listing's conversion time): the same object, its one
# slot _ip set directly. Measured (host, CPython 3.11, one call from Python
# each): IPv4Address(int) 435 ns, _v4 161 ns. Falls back to the constructor
# should ipaddress ever store it differently, and then
# tests/unit/test_house_unit.py fails loudly (the fast path is gone: decide
# again), as it does when an address built here differs from the real one.
cdef Py_ssize_t _V4_IP_OFF = (ipvs_rec_offset(IPv4Address.__dict__["_ip"])
                              if "_ip" in IPv4Address.__dict__ else -1)


cdef object _v4(object ip):
    if _V4_IP_OFF <= 0:
        return IPv4Address(ip)
    obj = ipvs_rec_alloc(IPv4Address)
    ipvs_rec_put(obj, _V4_IP_OFF, ip)
    return obj


cdef bint _v4_fast() noexcept:
    """Whether _v4 takes its fast path on this interpreter."""
    return _V4_IP_OFF > 0


cdef int _addr_to_c(object addr, ipvs_addr *out) except -1:
    cdef bytes packed
    if type(addr) is IPv4Address:
        # its int, without building .packed (a Python-level property)
        memset(out, 0, sizeof(ipvs_addr))
        out.ip = htonl(<uint32_t>addr._ip)
        return 0
    packed = addr.packed
    memset(out, 0, sizeof(ipvs_addr))
    memcpy(out.bytes, <const char *>packed, len(packed))
    return 0


cdef object _stats(int kind, const ipvs_stats *s):
    if kind == IPVS_STATS_NONE:
        return _ZERO_STATS  # .stats is always a Stats (all zero when the kernel sent none)
    if (s.conns | s.inpkts | s.outpkts | s.inbytes | s.outbytes | s.cps | s.inpps
            | s.outpps | s.inbps | s.outbps) == 0:
        return _ZERO_STATS
    obj = ipvs_rec_alloc(Stats)
    ipvs_rec_put(obj, _STATS_OFF[0], s.conns)
    ipvs_rec_put(obj, _STATS_OFF[1], s.inpkts)
    ipvs_rec_put(obj, _STATS_OFF[2], s.outpkts)
    ipvs_rec_put(obj, _STATS_OFF[3], s.inbytes)
    ipvs_rec_put(obj, _STATS_OFF[4], s.outbytes)
    ipvs_rec_put(obj, _STATS_OFF[5], s.cps)
    ipvs_rec_put(obj, _STATS_OFF[6], s.inpps)
    ipvs_rec_put(obj, _STATS_OFF[7], s.outpps)
    ipvs_rec_put(obj, _STATS_OFF[8], s.inbps)
    ipvs_rec_put(obj, _STATS_OFF[9], s.outbps)
    return obj


cdef inline int _prefix(uint32_t mask_host):
    cdef int n = 0
    while n < 32 and (mask_host & (<uint32_t>0x80000000 >> n)):
        n += 1
    return n


cdef object _svc_from_c(const ipvs_service *s, _AddrCache cache):
    obj = ipvs_rec_alloc(Service)
    ipvs_rec_put(obj, _SVC_OFF[0], AF_INET6 if s.af == C_AF_INET6 else AF_INET)
    # the kernel sends no protocol for fwmark services; it stores them as TCP
    ipvs_rec_put(obj, _SVC_OFF[1], _PROTO.get(s.protocol, s.protocol) if not s.fwmark else _TCP)
    if s.fwmark:
        ipvs_rec_put(obj, _SVC_OFF[2], None)
    else:
        ipvs_rec_put(obj, _SVC_OFF[2], cache.get(s.af, &s.addr) if cache is not None
                     else _addr(s.af, &s.addr))
    ipvs_rec_put(obj, _SVC_OFF[3], cache.port(s.port) if cache is not None else s.port)
    ipvs_rec_put(obj, _SVC_OFF[4], s.fwmark)
    ipvs_rec_put(obj, _SVC_OFF[5], _sched_name(s.sched_name))
    ipvs_rec_put(obj, _SVC_OFF[6], _svc_flags(s.flags))
    ipvs_rec_put(obj, _SVC_OFF[7], s.timeout)
    if s.af == C_AF_INET6:
        ipvs_rec_put(obj, _SVC_OFF[8], s.netmask)
    else:
        ipvs_rec_put(obj, _SVC_OFF[8], _prefix(ntohl(s.netmask)))
    ipvs_rec_put(obj, _SVC_OFF[9], (<bytes>s.pe_name).decode("ascii", "replace")
                 if s.pe_name[0] else None)
    ipvs_rec_put(obj, _SVC_OFF[10], _stats(s.stats_kind, &s.stats))
    return obj


cdef object _svc_key(const ipvs_service *s, _AddrCache cache):
    """apply()'s key of a dumped service, equal to what ipvs._plan._svc_key
    gives for its record: (family, -1, fwmark), or (family, protocol,
    address, port) with an IPv4 address as its int (an IPv6Address as is)."""
    cdef int af = C_AF_INET6 if s.af == C_AF_INET6 else C_AF_INET
    if s.fwmark:
        return (af, -1, s.fwmark)
    if af == C_AF_INET6:
        return (af, s.protocol, cache.get(af, &s.addr), s.port)
    return (af, s.protocol, ntohl(s.addr.ip), s.port)


cdef dict _SCHED_NAMES = {}


cdef object _sched_name(const char *name):
    """The scheduler's name as a str, one shared str per name."""
    b = <bytes>name
    r = _SCHED_NAMES.get(b)
    if r is None:
        r = b.decode("ascii", "replace")
        if len(_SCHED_NAMES) < 64:
            _SCHED_NAMES[b] = r
    return r


cdef int _svc_to_c(object svc, ipvs_service *c) except -1:
    cdef int nm
    memset(c, 0, sizeof(ipvs_service))
    c.af = <uint16_t>int(svc.family)
    c.protocol = <uint16_t>int(svc.protocol)
    c.fwmark = svc.fwmark
    if svc.address is not None:
        _addr_to_c(svc.address, &c.addr)
    c.port = svc.port
    sched = (<str>svc.scheduler).encode("ascii")
    if len(sched) >= IPVS_SCHED_NAME_MAX:
        raise ValueError("Service.scheduler is too long")
    memcpy(c.sched_name, <const char *>sched, len(sched))
    if svc.pe_name:
        pe = (<str>svc.pe_name).encode("ascii")
        if len(pe) >= IPVS_PE_NAME_MAX:
            raise ValueError("Service.pe_name is too long")
        memcpy(c.pe_name, <const char *>pe, len(pe))
    c.flags = int(svc.flags)
    c.flags_mask = ~(<uint32_t>0)    # every flag bit as given
    c.timeout = svc.timeout
    nm = svc.netmask
    if c.af == C_AF_INET6:
        c.netmask = nm
    else:
        # shift a C uint32 (a Python int would grow past 32 bits): nm is 0..32
        c.netmask = htonl((<uint32_t>0xFFFFFFFF) << (32 - nm)) if nm > 0 else 0
    return 0


cdef object _dest_from_c(const ipvs_dest *d, int svc_af, _AddrCache cache):
    obj = ipvs_rec_alloc(Destination)
    cdef int af = d.af if d.af else svc_af
    cdef uint32_t fwd = d.conn_flags & IPVS_FWD_MASK
    ipvs_rec_put(obj, _DEST_OFF[0], cache.get(af, &d.addr))
    ipvs_rec_put(obj, _DEST_OFF[1], cache.port(d.port))
    ipvs_rec_put(obj, _DEST_OFF[2], AF_INET6 if af == C_AF_INET6 else AF_INET)
    ipvs_rec_put(obj, _DEST_OFF[3], d.weight)
    ipvs_rec_put(obj, _DEST_OFF[4], _FORWARD[fwd] if fwd <= IPVS_FWD_BYPASS else fwd)
    ipvs_rec_put(obj, _DEST_OFF[5], d.u_threshold)
    ipvs_rec_put(obj, _DEST_OFF[6], d.l_threshold)
    ipvs_rec_put(obj, _DEST_OFF[7], _TUNTYPE_T[d.tun_type] if d.tun_type <= IPVS_TUN_TYPE_GRE else d.tun_type)
    ipvs_rec_put(obj, _DEST_OFF[8], cache.port(d.tun_port))
    ipvs_rec_put(obj, _DEST_OFF[9], _tun_flags(d.tun_flags))
    ipvs_rec_put(obj, _DEST_OFF[10], d.activeconns)
    ipvs_rec_put(obj, _DEST_OFF[11], d.inactconns)
    ipvs_rec_put(obj, _DEST_OFF[12], d.persistconns)
    ipvs_rec_put(obj, _DEST_OFF[13], _stats(d.stats_kind, &d.stats))
    return obj


cdef int _dest_to_c(object dest, ipvs_dest *c) except -1:
    # the enum fields are int subclasses: converted straight to C (no int()
    # object made for each; apply() converts every wanted destination)
    memset(c, 0, sizeof(ipvs_dest))
    c.af = dest.family
    _addr_to_c(dest.address, &c.addr)
    c.port = dest.port
    c.conn_flags = dest.forward
    c.weight = dest.weight
    c.u_threshold = dest.upper_threshold
    c.l_threshold = dest.lower_threshold
    c.tun_type = dest.tunnel_type
    c.tun_port = dest.tunnel_port
    c.tun_flags = dest.tunnel_flags
    return 0


# A destination's identity within its service as 20 comparable bytes
# (family, port, address) and its index in the dump: Handle.compare sorts the
# dumped destinations by it and looks the wanted ones up with bsearch.
ctypedef struct _dkey:
    uint8_t k[20]
    size_t idx


cdef inline void _dkey_of(const ipvs_dest *d, int svc_af, _dkey *out) noexcept nogil:
    cdef uint16_t af = d.af if d.af else <uint16_t>svc_af
    memset(out.k, 0, 20)
    memcpy(&out.k[0], &af, 2)
    memcpy(&out.k[2], &d.port, 2)
    if af == C_AF_INET6:
        memcpy(&out.k[4], d.addr.bytes, 16)
    else:
        memcpy(&out.k[4], &d.addr.ip, 4)


cdef int _dkey_cmp(const void *a, const void *b) noexcept nogil:
    return memcmp(a, b, 20)


def dest_map(list dests):
    """{key: destination} for apply(), the key standing for ``d.key``:
    (address, port) with an IPv4 address as its int (hashing an ipaddress
    object runs Python code). Read straight from the records' slots. An
    item that is not a `Destination` (exactly), or whose port is None, goes
    under the key None (the caller checks and fills in)."""
    cdef dict out = {}
    cdef PyObject *a
    cdef PyObject *port
    for d in dests:
        if type(d) is not Destination:
            out[None] = d
            continue
        port = ipvs_rec_get(d, _DEST_OFF[1])
        a = ipvs_rec_get(d, _DEST_OFF[0])
        if port is NULL or a is NULL or <object>port is None:
            out[None] = d
            continue
        if _V4_IP_OFF > 0 and type(<object>a) is IPv4Address:
            out[(<object>ipvs_rec_get(<object>a, _V4_IP_OFF), <object>port)] = d
        else:
            out[(<object>a, <object>port)] = d
    return out


cdef object _daemon_from_c(const ipvs_daemon *d):
    group = None
    if d.mcast_af == C_AF_INET or d.mcast_af == C_AF_INET6:
        group = _addr(d.mcast_af, &d.mcast_group)
    try:
        state = DaemonState(d.state)
    except ValueError:
        state = d.state
    return Daemon._make(state, (<bytes>d.mcast_ifn).decode("ascii", "replace"), d.syncid,
                        d.sync_maxlen, group, d.mcast_port, d.mcast_ttl)


cdef int _interrupt_check(void *arg) noexcept with gil:
    """libipvs's interrupt check (on EINTR while waiting for the kernel): run
    the Python signal handlers; if one raised (Ctrl-C: KeyboardInterrupt), the
    C call is abandoned with -EINTR and Handle._check re-raises the exception.
    Only the main thread runs handlers: elsewhere this returns 0 (keep waiting)."""
    return 1 if _check_signals() != 0 else 0


cdef class Handle:
    """An open libipvs handle (one kernel socket). Thread-safe: the C layer
    serializes calls; close() waits for no one but defers the C close until the
    last call in flight returns."""

    cdef ipvs_handle *h
    cdef int users
    cdef bint closing

    def __cinit__(self, int backend, int netns_fd, int timeout_ms):
        cdef int rc
        cdef ipvs_handle *h = NULL
        with nogil:
            rc = ipvs_open(&h, backend, netns_fd, timeout_ms)
        if rc < 0:
            msg = (<bytes>ipvs_open_errmsg()).decode("utf-8", "replace")
            raise from_errno("open", rc, kernel_message=msg, target="the IPVS socket")
        self.h = h
        ipvs_set_interrupt_check(h, _interrupt_check, NULL)

    def __dealloc__(self):
        if self.h is not NULL:
            ipvs_close(self.h)
            self.h = NULL

    cdef int _enter(self) except -1:
        if self.h is NULL or self.closing:
            raise ValueError("I/O operation on a closed IPVS handle")
        self.users += 1
        return 0

    cdef void _leave(self):
        self.users -= 1
        if self.closing and self.users == 0 and self.h is not NULL:
            ipvs_close(self.h)
            self.h = NULL

    def close(self):
        if self.h is NULL or self.closing:
            return
        self.closing = True
        if self.users == 0:
            ipvs_close(self.h)
            self.h = NULL

    @property
    def closed(self):
        return self.h is NULL or self.closing

    @property
    def backend(self):
        if self.h is NULL:
            raise ValueError("I/O operation on a closed IPVS handle")
        return BACKEND_NAMES[ipvs_backend(self.h)]

    def fileno(self):
        if self.h is NULL:
            raise ValueError("I/O operation on a closed IPVS handle")
        return ipvs_fd(self.h)

    def link_up(self, str name):
        """Whether network interface ``name`` is up in the handle's namespace
        (None when that cannot be told: no such interface, closed handle)."""
        cdef int rc
        cdef bytes bname = name.encode("ascii")
        cdef const char *cname = bname
        if self.h is NULL or self.closing:
            return None
        self._enter()
        try:
            with nogil:
                rc = ipvs_link_up(self.h, cname)
        finally:
            self._leave()
        return None if rc < 0 else rc != 0

    def set_timeout(self, int timeout_ms):
        self._enter()
        try:
            ipvs_set_timeout(self.h, timeout_ms)
        finally:
            self._leave()

    cdef int _check(self, int rc, str op, object svc=None, object dest=None,
                    dict extra=None) except -1:
        """The one check of every libipvs return code."""
        if rc >= 0:
            return 0
        if rc == -EINTR and PyErr_Occurred() is not NULL:
            return -1   # from the interrupt check: raise the handler's exception
        msg = (<bytes>ipvs_errmsg(self.h)).decode("utf-8", "replace") if self.h is not NULL else ""
        ctx = _error_context(self, svc, dest)
        if extra:
            ctx.update(extra)
        raise from_errno(op, rc, kernel_message=msg, **ctx)

    # ---------------------------------------------------------------- info
    def info(self):
        cdef ipvs_info info
        cdef int rc
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_info(self.h, &info)
            self._check(rc, "info")
        finally:
            self._leave()
        return (info.version, info.conn_tab_size)

    # ------------------------------------------------------------ services
    def services(self):
        cdef ipvs_service *arr = NULL
        cdef size_t n = 0, i
        cdef int rc
        cdef _AddrCache cache = _AddrCache()
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_services(self.h, &arr, &n)
            self._check(rc, "services")
            return [_svc_from_c(&arr[i], cache) for i in range(n)]
        finally:
            ipvs_free(arr)
            self._leave()

    def get_service(self, svc):
        cdef ipvs_service key, out
        cdef int rc
        _svc_to_c(svc, &key)
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_service(self.h, &key, &out)
            self._check(rc, "get_service", svc)
        finally:
            self._leave()
        return _svc_from_c(&out, None)

    def _svc_op(self, str op, svc):
        cdef ipvs_service c
        cdef int rc
        cdef int which = OPS[op]
        _svc_to_c(svc, &c)
        self._enter()
        try:
            with nogil:
                if which == IPVS_OP_ADD_SERVICE:
                    rc = ipvs_add_service(self.h, &c)
                elif which == IPVS_OP_UPDATE_SERVICE:
                    rc = ipvs_update_service(self.h, &c)
                else:
                    rc = ipvs_del_service(self.h, &c)
            self._check(rc, op, svc)
        finally:
            self._leave()

    # -------------------------------------------------------- destinations
    cdef int _listed_dests(self, ipvs_service *c, ipvs_dest **arr, size_t *m,
                           object svc) except -1:
        """The destinations of a service of a service dump (``listing()``,
        ``compare()``): one that was deleted since the dump has none. ESRCH
        (sockopt) says so; netlink's dump is then empty: the same on both."""
        cdef int rc
        with nogil:
            rc = ipvs_get_dests(self.h, c, arr, m)
        if rc == -ESRCH:
            rc = 0
            m[0] = 0
        return self._check(rc, "destinations", svc)

    def destinations(self, svc):
        cdef ipvs_service c, found
        cdef ipvs_dest *arr = NULL
        cdef size_t n = 0, i
        cdef int rc
        cdef _AddrCache cache = _AddrCache()
        _svc_to_c(svc, &c)
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_dests(self.h, &c, &arr, &n)
                if rc == 0 and n == 0:
                    # netlink dumps nothing for a missing service; say so as
                    # sockopt does (one more round trip, only when empty)
                    rc = ipvs_get_service(self.h, &c, &found)
            self._check(rc, "destinations", svc)
            return [_dest_from_c(&arr[i], c.af, cache) for i in range(n)]
        finally:
            ipvs_free(arr)
            self._leave()

    def listing(self):
        """Every service with its destinations: [(Service, [Destination])].
        One service dump, then one destination dump per service, on one socket
        with one address cache."""
        cdef ipvs_service *svcs = NULL
        cdef ipvs_dest *arr = NULL
        cdef size_t n = 0, m = 0, i, j
        cdef int rc
        cdef _AddrCache cache = _AddrCache()
        result = []
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_services(self.h, &svcs, &n)
            self._check(rc, "services")
            for i in range(n):
                svc = _svc_from_c(&svcs[i], cache)
                self._listed_dests(&svcs[i], &arr, &m, svc)
                result.append((svc, [_dest_from_c(&arr[j], svcs[i].af, cache) for j in range(m)]))
                ipvs_free(arr)
                arr = NULL
            return result
        finally:
            ipvs_free(arr)
            ipvs_free(svcs)
            self._leave()

    def compare(self, dict want, bint prune_dests):
        """apply()'s read of the table, compared with ``want`` on the raw
        records: no model object is built for what is equal, and no Python
        code runs per service.

        ``want``: {key: (Service, {key: Destination})}, ports set, each
        service under the key ipvs._plan._svc_key gives (computed here from
        the dumped record, _svc_key above). One service dump, then one
        destination dump per service of ``want`` found in the table; its
        destinations are compared with the wanted ones as C structs (key:
        family, address, port; then weight, forwarding method, thresholds,
        tunnel settings), as the records' equality compares them. Returns
        (services, diffs): every service of the table as (key, `Service`) in
        dump order, and {key: (deleted, writes)}
        for each wanted service whose destinations differ: ``deleted`` the
        table's destinations that ``want`` lacks, in dump order (only with
        ``prune_dests``), ``writes`` [(method, Destination)] in ``want``'s
        order ("add_destination" or "update_destination")."""
        cdef ipvs_service *svcs = NULL
        cdef ipvs_dest *arr = NULL
        cdef _dkey *keys = NULL
        cdef char *seen = NULL
        cdef size_t n = 0, m = 0, i, j, cap = 0
        cdef int rc
        cdef ipvs_dest wd
        cdef _dkey probe
        cdef _dkey *hit
        cdef ipvs_dest *kd
        cdef _AddrCache cache = _AddrCache()
        services = []
        diffs = {}
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_services(self.h, &svcs, &n)
            self._check(rc, "services")
            for i in range(n):
                key = _svc_key(&svcs[i], cache)
                svc = _svc_from_c(&svcs[i], cache)
                services.append((key, svc))
                w = want.get(key)
                if w is None:
                    continue
                self._listed_dests(&svcs[i], &arr, &m, svc)
                if m > cap:
                    free(keys)
                    free(seen)
                    keys = NULL
                    seen = NULL
                    cap = m * 2
                    keys = <_dkey *>malloc(cap * sizeof(_dkey))
                    seen = <char *>malloc(cap)
                    if keys is NULL or seen is NULL:
                        raise MemoryError()
                for j in range(m):
                    _dkey_of(&arr[j], svcs[i].af, &keys[j])
                    keys[j].idx = j
                    seen[j] = 0
                if m > 1:
                    qsort(keys, m, sizeof(_dkey), _dkey_cmp)
                writes = None
                for d in (<dict>w[1]).values():
                    _dest_to_c(d, &wd)
                    _dkey_of(&wd, wd.af, &probe)
                    hit = <_dkey *>bsearch(&probe, keys, m, sizeof(_dkey), _dkey_cmp) if m else NULL
                    if hit is NULL:
                        if writes is None:
                            writes = []
                        writes.append(("add_destination", d))
                        continue
                    seen[hit.idx] = 1
                    kd = &arr[hit.idx]
                    if (kd.weight != wd.weight
                            or (kd.conn_flags & IPVS_FWD_MASK) != (wd.conn_flags & IPVS_FWD_MASK)
                            or kd.u_threshold != wd.u_threshold
                            or kd.l_threshold != wd.l_threshold
                            or kd.tun_type != wd.tun_type or kd.tun_port != wd.tun_port
                            or kd.tun_flags != wd.tun_flags):
                        if writes is None:
                            writes = []
                        writes.append(("update_destination", d))
                deleted = None
                if prune_dests:
                    for j in range(m):
                        if not seen[j]:
                            if deleted is None:
                                deleted = []
                            deleted.append(_dest_from_c(&arr[j], svcs[i].af, cache))
                if writes is not None or deleted is not None:
                    diffs[key] = (deleted or [], writes or [])
                ipvs_free(arr)
                arr = NULL
            return services, diffs
        finally:
            free(keys)
            free(seen)
            ipvs_free(arr)
            ipvs_free(svcs)
            self._leave()

    def _dest_op(self, str op, svc, dest):
        cdef ipvs_service c
        cdef ipvs_dest d
        cdef int rc
        cdef int which = OPS[op]
        _svc_to_c(svc, &c)
        _dest_to_c(dest, &d)
        self._enter()
        try:
            with nogil:
                if which == IPVS_OP_ADD_DEST:
                    rc = ipvs_add_dest(self.h, &c, &d)
                elif which == IPVS_OP_UPDATE_DEST:
                    rc = ipvs_update_dest(self.h, &c, &d)
                else:
                    rc = ipvs_del_dest(self.h, &c, &d)
            self._check(rc, op, svc, dest)
        finally:
            self._leave()

    # ------------------------------------------------------------- table
    def flush(self):
        cdef int rc
        self._enter()
        try:
            with nogil:
                rc = ipvs_flush(self.h)
            self._check(rc, "flush")
        finally:
            self._leave()

    def zero(self, svc=None):
        cdef ipvs_service c
        cdef int rc
        cdef ipvs_service *p = NULL
        if svc is not None:
            _svc_to_c(svc, &c)
            p = &c
        self._enter()
        try:
            with nogil:
                rc = ipvs_zero(self.h, p)
            self._check(rc, "zero", svc)
        finally:
            self._leave()

    def timeouts(self):
        cdef ipvs_timeouts t
        cdef int rc
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_timeouts(self.h, &t)
            self._check(rc, "timeouts")
        finally:
            self._leave()
        return Timeouts._make(t.tcp, t.tcp_fin, t.udp)

    def set_timeouts(self, uint32_t tcp, uint32_t tcp_fin, uint32_t udp):
        cdef ipvs_timeouts t
        cdef int rc
        t.tcp = tcp
        t.tcp_fin = tcp_fin
        t.udp = udp
        self._enter()
        try:
            with nogil:
                rc = ipvs_set_timeouts(self.h, &t)
            self._check(rc, "set_timeouts")
        finally:
            self._leave()

    # ------------------------------------------------------------ daemons
    def daemons(self):
        cdef ipvs_daemon d[2]
        cdef size_t n = 0, i
        cdef int rc
        memset(d, 0, sizeof(d))
        self._enter()
        try:
            with nogil:
                rc = ipvs_get_daemons(self.h, d, &n)
            self._check(rc, "daemons")
        finally:
            self._leave()
        if n > 2:
            n = 2
        return [_daemon_from_c(&d[i]) for i in range(n)]

    def start_daemon(self, daemon):
        cdef ipvs_daemon d
        cdef int rc
        memset(&d, 0, sizeof(d))
        d.state = int(daemon.state)
        ifn = (<str>daemon.interface).encode("ascii")
        if len(ifn) >= IPVS_IFNAME_MAX:
            raise ValueError("Daemon.interface is too long")
        memcpy(d.mcast_ifn, <const char *>ifn, len(ifn))
        d.syncid = daemon.sync_id
        d.sync_maxlen = daemon.max_len
        if daemon.mcast_group is not None:
            d.mcast_af = C_AF_INET6 if daemon.mcast_group.version == 6 else C_AF_INET
            _addr_to_c(daemon.mcast_group, &d.mcast_group)
        d.mcast_port = daemon.mcast_port
        d.mcast_ttl = daemon.mcast_ttl
        self._enter()
        try:
            with nogil:
                rc = ipvs_start_daemon(self.h, &d)
            self._check(rc, "start_daemon", None, None, {
                "interface": daemon.interface, "state": daemon.state.name.lower(),
                "target": "%s sync daemon on %s" % (daemon.state.name.lower(), daemon.interface)})
        finally:
            self._leave()

    def stop_daemon(self, state):
        cdef int rc
        cdef int st = int(state)
        self._enter()
        try:
            with nogil:
                rc = ipvs_stop_daemon(self.h, st)
            name = state.name.lower() if hasattr(state, "name") else str(state)
            self._check(rc, "stop_daemon", None, None, {"state": name,
                                                  "target": "%s sync daemon" % name})
        finally:
            self._leave()

    # -------------------------------------------------------------- batch
    def batch(self, list calls):
        """calls: [(op_name, service, destination_or_None)]. Returns a list of
        None (applied) or the exception of each call, in order; raises only
        when the transport itself failed.

        Converted and sent in slices of _BATCH_SLICE requests through one
        reused C array: an array for all of a large batch (300 bytes a
        request, 33 MB for 110,000) would be fresh memory each time, and its
        page faults cost more than the syscalls in the sandbox kernel."""
        cdef size_t n = len(calls), i, j, k, base
        cdef size_t cap = n if n < _BATCH_SLICE else _BATCH_SLICE
        cdef ipvs_op *ops
        cdef int rc = 0
        if n == 0:
            return []
        ops = <ipvs_op *>malloc(cap * sizeof(ipvs_op))
        if ops is NULL:
            raise MemoryError()
        results = []
        msg = ""
        try:
            base = 0
            while base < n:
                k = n - base if n - base < cap else cap
                if rc < 0:
                    # the transport failed in an earlier slice: these were never sent
                    for j in range(k):
                        ops[j].err = 1
                else:
                    prev = None
                    for j in range(k):
                        op, svc, dest = calls[base + j]
                        ops[j].op = OPS[op]
                        if svc is prev:
                            # the usual case: a service's calls follow it; convert once
                            memcpy(&ops[j].svc, &ops[j - 1].svc, sizeof(ipvs_service))
                        else:
                            _svc_to_c(svc, &ops[j].svc)
                            prev = svc
                        if dest is not None:
                            _dest_to_c(dest, &ops[j].dest)
                        else:
                            memset(&ops[j].dest, 0, sizeof(ipvs_dest))
                    self._enter()
                    try:
                        with nogil:
                            rc = ipvs_batch(self.h, ops, k)
                        if rc == -EINTR and PyErr_Occurred() is not NULL:
                            self._check(rc, "batch")   # re-raises the handler's exception
                        msg = (<bytes>ipvs_errmsg(self.h)).decode("utf-8", "replace")
                    finally:
                        self._leave()
                for j in range(k):
                    err = ops[j].err
                    if err == 0:
                        results.append(None)
                        continue
                    op, svc, dest = calls[base + j]
                    # err > 0: never confirmed; the transport's failure if it
                    # failed, else EIO
                    e = rc if err > 0 and rc < 0 else (err if err < 0 else -EIO)
                    results.append(from_errno(op, e, kernel_message=msg if err > 0 else None,
                                              **_error_context(self, svc, dest)))
                base += k
            return results
        finally:
            free(ops)

    # --------------------------------------------------------------- proc
    def read_proc_net(self, str name, str op=None):
        """/proc/net/NAME as seen from the handle's namespace; a failure (a
        missing file included) raises the exception of operation ``op``."""
        cdef char *buf = NULL
        cdef size_t n = 0
        cdef int rc
        cdef bytes bname = name.encode("ascii")
        cdef const char *cname = bname
        self._enter()
        try:
            with nogil:
                rc = ipvs_read_proc_net(self.h, cname, &buf, &n)
            self._check(rc, op or "read /proc/net/" + name, None, None,
                        {"target": "/proc/net/" + name})
            return PyBytes_FromStringAndSize(buf, n).decode("ascii", "replace")
        finally:
            ipvs_free(buf)
            self._leave()


def debug_alloc_counts():
    """(allocations, frees) of the C layer so far in a -DIPVS_DEBUG_ALLOC build
    (see csrc/alloc.h), None in a normal build."""
    cdef long a = 0, f = 0
    if ipvs_debug_alloc_counts(&a, &f) < 0:
        return None
    return (a, f)


cdef dict _error_context(Handle handle, object svc, object dest):
    """What errors.from_errno needs to word a message about svc / dest."""
    ctx = _errors.call_context(svc, dest)
    if dest is not None:
        # asked only when the errno makes lo's state matter (errors._why)
        ctx["_lo_up"] = lambda: handle.link_up("lo")
    return ctx
