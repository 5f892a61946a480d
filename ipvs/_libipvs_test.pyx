# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Private test module of ipvs._libipvs: entry points for the unit tests,
none of which the release extension carries.

Built by setup.py in in-place (``setup.py build_ext --inplace``) and editable
(``pip install -e``, as scripts/test.sh does) builds, or in any build with
IPVS_TEST_MODULE=1; never in a wheel (IPVS_TEST_MODULE unset), so the
installed wheel's unit tests skip what needs it (tests/unit/_private.py
says why).

It calls the release module's own conversions (cimported through
ipvs/_libipvs.pxd: the same compiled code a listing runs, not a copy) and
links the netlink reply parser (csrc/nlparse.c, the source the netlink
transport is built from) to replay recorded replies:

* tests/unit/test_house_unit.py: records built by filling __slots__
  directly (and IPv4Address._ip) are the objects the constructors build;
* tests/unit/test_old_kernels.py: replies shaped as older kernels send them,
  through the parser and the conversion.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memset

from ipvs._libipvs cimport (ipvs_service, ipvs_dest, ipvs_daemon, ipvs_info, ipvs_timeouts,
                            _AddrCache, _v4, _v4_fast, _svc_from_c, _svc_to_c, _dest_from_c,
                            _dest_to_c, _daemon_from_c)

from ipvs._model import Timeouts

cdef extern from "uapi.h" nogil:
    enum:
        K_NLMSG_ERROR
        K_NLMSG_DONE
        K_NLMSG_MIN_TYPE
        K_IPVS_CMD_NEW_SERVICE
        K_IPVS_CMD_SET_SERVICE
        K_IPVS_CMD_GET_SERVICE
        K_IPVS_CMD_NEW_DEST
        K_IPVS_CMD_SET_DEST
        K_IPVS_CMD_GET_DEST
        K_IPVS_CMD_NEW_DAEMON
        K_IPVS_CMD_GET_DAEMON
        K_IPVS_CMD_SET_CONFIG
        K_IPVS_CMD_GET_CONFIG
        K_IPVS_CMD_SET_INFO
        K_IPVS_CMD_GET_INFO

cdef extern from "nlparse.h" nogil:
    struct nlp_msg:
        uint32_t len
        uint16_t type
        uint16_t flags
        const uint8_t *data
        size_t datalen
    int nlp_next_msg(const uint8_t *buf, size_t len, size_t *off, nlp_msg *m)
    int nlp_parse_error(const nlp_msg *m, int *error, char *msg, size_t msgsz)
    int nlp_genl(const nlp_msg *m, uint8_t *cmd, const uint8_t **attrs, size_t *alen)
    int nlp_parse_service_msg(const nlp_msg *m, ipvs_service *out)
    int nlp_parse_dest_msg(const nlp_msg *m, uint16_t svc_af, ipvs_dest *out)
    int nlp_parse_daemon_msg(const nlp_msg *m, ipvs_daemon *out)
    int nlp_parse_info_msg(const nlp_msg *m, ipvs_info *out)
    int nlp_parse_config_msg(const nlp_msg *m, ipvs_timeouts *out)


# ---------------------------------------------------------------------------
# The conversions, fed with model objects (tests/unit/test_house_unit.py).

def _convert_roundtrip(svc, dest=None):
    """(Service, Destination or None) as the C structs for svc / dest read
    back: to C and back through the fast paths of a listing."""
    cdef ipvs_service c
    cdef ipvs_dest d
    cdef _AddrCache cache = _AddrCache()
    _svc_to_c(svc, &c)
    out_svc = _svc_from_c(&c, cache)
    if dest is None:
        return (out_svc, None)
    _dest_to_c(dest, &d)
    return (out_svc, _dest_from_c(&d, c.af, cache))


def _v4_from_int(ip):
    """IPv4Address(ip) the way a listing builds it (ip: 0 .. 2**32-1)."""
    return _v4(ip)


def _fast_paths():
    """Which fast paths this interpreter allows: {"records": True (always:
    else ipvs._libipvs failed to import), "ipv4": whether IPv4Address._ip is
    a slot}."""
    return {"records": True, "ipv4": bool(_v4_fast())}


# ---------------------------------------------------------------------------
# Replies replayed: the reply parser of csrc/nlparse.c on a recorded receive
# buffer (tests/unit/test_old_kernels.py feeds it replies shaped as older
# kernels send them).

def _parse_nl_reply(bytes data, int svc_af=2):
    """Parse one netlink receive buffer of IPVS replies into model objects.

    Returns one (kind, value) pair per message: ("service", Service),
    ("destination", Destination) (addresses without ADDR_FAMILY take
    ``svc_af``), ("daemon", Daemon), ("info", (version, conn_tab_size)),
    ("timeouts", Timeouts), ("error", (errno, message)) for NLMSG_ERROR
    (errno 0: an ack), ("done", None), ("unparsed", (type, cmd, rc)) where the
    parser refused the message (rc < 0), ("other", type) for anything else.
    Raises ValueError when the buffer's message framing is broken.
    """
    cdef const uint8_t *buf = <const uint8_t *>data
    cdef size_t off = 0, alen = 0
    cdef nlp_msg m
    cdef int r, err = 0, rc
    cdef uint8_t cmd = 0
    cdef const uint8_t *attrs = NULL
    cdef char msg[256]
    cdef ipvs_service svc
    cdef ipvs_dest dest
    cdef ipvs_daemon dm
    cdef ipvs_info info
    cdef ipvs_timeouts to
    cdef _AddrCache cache = _AddrCache()
    out = []
    while True:
        r = nlp_next_msg(buf, len(data), &off, &m)
        if r == 0:
            break
        if r < 0:
            raise ValueError("broken netlink framing at offset %d" % off)
        if m.type == K_NLMSG_ERROR:
            msg[0] = 0
            rc = nlp_parse_error(&m, &err, msg, sizeof(msg))
            if rc < 0:
                out.append(("unparsed", (m.type, 0, rc)))
            else:
                out.append(("error", (-err, (<bytes>msg).decode("utf-8", "replace"))))
            continue
        if m.type == K_NLMSG_DONE:
            out.append(("done", None))
            continue
        # the control family (GENL_ID_CTRL, the first id) and netlink's own types
        if m.type <= K_NLMSG_MIN_TYPE or nlp_genl(&m, &cmd, &attrs, &alen) < 0:
            out.append(("other", m.type))
            continue
        if cmd in (K_IPVS_CMD_NEW_SERVICE, K_IPVS_CMD_SET_SERVICE, K_IPVS_CMD_GET_SERVICE):
            memset(&svc, 0, sizeof(svc))
            rc = nlp_parse_service_msg(&m, &svc)
            item = ("service", _svc_from_c(&svc, cache)) if rc == 0 else None
        elif cmd in (K_IPVS_CMD_NEW_DEST, K_IPVS_CMD_SET_DEST, K_IPVS_CMD_GET_DEST):
            memset(&dest, 0, sizeof(dest))
            rc = nlp_parse_dest_msg(&m, <uint16_t>svc_af, &dest)
            item = ("destination", _dest_from_c(&dest, svc_af, cache)) if rc == 0 else None
        elif cmd in (K_IPVS_CMD_NEW_DAEMON, K_IPVS_CMD_GET_DAEMON):
            memset(&dm, 0, sizeof(dm))
            rc = nlp_parse_daemon_msg(&m, &dm)
            item = ("daemon", _daemon_from_c(&dm)) if rc == 0 else None
        elif cmd in (K_IPVS_CMD_SET_INFO, K_IPVS_CMD_GET_INFO):
            memset(&info, 0, sizeof(info))
            rc = nlp_parse_info_msg(&m, &info)
            item = ("info", (info.version, info.conn_tab_size)) if rc == 0 else None
        elif cmd in (K_IPVS_CMD_SET_CONFIG, K_IPVS_CMD_GET_CONFIG):
            memset(&to, 0, sizeof(to))
            rc = nlp_parse_config_msg(&m, &to)
            item = ("timeouts", Timeouts._make(to.tcp, to.tcp_fin, to.udp)) if rc == 0 else None
        else:
            out.append(("other", m.type))
            continue
        out.append(item if item is not None else ("unparsed", (m.type, cmd, rc)))
    return out
