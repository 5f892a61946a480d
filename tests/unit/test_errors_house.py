"""Issue 13/14, the one error path: ipvs/errors.py is the only module that
knows errno values; from_errno words every message (open failures and
EOPNOTSUPP included); ipvsadm_message gives ipvsadm's wording; the
destination EINVAL hint names lo only when lo is down."""
import errno
import pathlib
import re

import pytest

import ipvs
from ipvs import errors

PKG = pathlib.Path(ipvs.__file__).parent

# An errno number written as a literal: compared with a return code or errno,
# given to an exception or strerror, or a fallback of an errno attribute.
LITERAL = [
    re.compile(r"\b(?:rc|err|errno|ret|e|code)\s*[=!]=\s*-?[1-9]\d*\b"),
    re.compile(r"\b\w*Error\(\s*-?[1-9]\d*\s*,"),
    re.compile(r"strerror\(\s*-?[1-9]\d*\s*\)"),
    re.compile(r"\berrno\s+or\s+[1-9]\d*\b"),
    re.compile(r"from_errno\([^,()]+,\s*-?[1-9]\d*\b"),
]
# modules that may import the errno module: errors.py (the table),
# netns.py (its own mount/setns system calls, not IPVS errors) and
# _memory.py (the memory backend stands in for the C layer and the kernel:
# it answers with the kernel's errno, which errors.py then turns into the
# exception, exactly as for a kernel reply)
ERRNO_IMPORT_OK = {"errors.py", "netns.py", "_memory.py"}


def _sources():
    files = sorted(p for p in PKG.iterdir()
                   if p.suffix in (".py", ".pyx", ".pxd") and p.name != "errors.py")
    if (PKG.parent / "csrc").is_dir():
        # the source tree: the Cython module must be among the scanned files
        # (an installed wheel carries the .py files and the .pxd only)
        assert any(p.name == "_libipvs.pyx" for p in files), "the .pyx is not beside the package"
    return files


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in _sources()])
def test_no_errno_literal_outside_errors_py(path):
    hits = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        for pat in LITERAL:
            if pat.search(code):
                hits.append("%s:%d: %s" % (path.name, no, line.strip()))
        if re.match(r"\s*(import errno|from errno|cimport.*errno|.*import errno as)", code) \
                and path.name not in ERRNO_IMPORT_OK and "cimport" not in code:
            hits.append("%s:%d: imports errno: %s" % (path.name, no, line.strip()))
    assert not hits, "errno values outside errors.py:\n" + "\n".join(hits)


def test_the_scan_finds_what_it_must():
    """The patterns above catch the forms that were in the tree."""
    for bad in ("if rc == -4 and x:", "raise IPVSError(2, 'x', 'stats')",
                "os.strerror(19)", "os.strerror(e.errno or 92)", "if err == 95:",
                "from_errno(op, 5, **ctx)"):
        assert any(p.search(bad) for p in LITERAL), bad
    for good in ("if rc < 0:", "if rc == -EINTR:", "from_errno(op, rc, **ctx)",
                 "IPVSError(e.errno or 0, msg)"):
        assert not any(p.search(good) for p in LITERAL), good


# -- from_errno: the messages the Cython layer used to rewrite ---------------

def test_eopnotsupp_names_the_feature():
    e = errors.from_errno("add_service", -errno.EOPNOTSUPP, kernel_message="a persistence engine",
                          service="service TCP 1.2.3.4:80")
    assert type(e) is ipvs.UnsupportedError and e.errno == errno.EOPNOTSUPP
    assert str(e).startswith("add_service: a persistence engine is not supported by this backend")
    assert e.kernel_message is None
    e = errors.from_errno("add_service", errno.EOPNOTSUPP)
    assert "not supported" in str(e)


def test_open_uses_the_table_then_the_c_message():
    e = errors.from_errno("open", -errno.ENOENT, kernel_message="family not registered")
    assert type(e) is ipvs.IPVSUnavailableError and "modprobe ip_vs" in str(e)
    assert e.kernel_message is None and "family not registered" not in str(e)
    e = errors.from_errno("open", -errno.EMFILE, kernel_message="cannot create socket {x}",
                          target="the IPVS socket")
    assert type(e) is ipvs.IPVSError and e.errno == errno.EMFILE
    assert str(e).startswith("open: cannot create socket {x}")


def test_negative_return_codes_are_errnos():
    assert errors.from_errno("flush", -errno.EPERM).errno == errno.EPERM


def test_proc_files_missing():
    e = errors.from_errno("stats", -errno.ENOENT, target="/proc/net/ip_vs_stats")
    assert isinstance(e, ipvs.IPVSUnavailableError) and e.errno == errno.ENOENT
    assert "/proc/net/ip_vs_stats is missing" in str(e)


def test_inconsistent_dump():
    e = errors.inconsistent_dump("table", 7)
    assert type(e) is ipvs.InconsistentDumpError and e.errno == errno.EAGAIN
    assert "7 tries" in str(e) and e.operation == "table"


def test_no_doubled_word():
    svc = ipvs.Service(address="10.0.0.1", port=80, scheduler="rr")
    dest = ipvs.Destination("192.168.1.99", 80)
    for op in ("update_destination", "delete_destination", "add_destination"):
        e = errors.from_errno(op, errno.ENOENT, service=str(svc), destination=str(dest))
        assert "destination destination" not in str(e)
        assert "destination 192.168.1.99:80" in str(e)


# -- EINVAL on a destination: lo only when lo is down --------------------------

SVC = ipvs.Service(address="10.0.0.1", port=80, scheduler="rr")


def _einval(dest, lo):
    asked = []

    def lo_up():
        asked.append(1)
        return lo
    e = errors.from_errno("add_destination", -errno.EINVAL, _service=SVC, _dest=dest,
                          _lo_up=lo_up, service=str(SVC), destination=str(dest))
    return str(e), asked


def test_einval_lo_down_says_so():
    text, asked = _einval(ipvs.Destination("192.168.1.1", 80), False)
    assert "lo is down" in text and "ip link set lo up" in text and asked


def test_einval_lo_up_does_not_guess_lo():
    text, _ = _einval(ipvs.Destination("192.168.1.1", 80), True)
    assert "lo" not in text.replace("local", "")
    assert "unicast" in text and "broadcast" in text


def test_einval_lo_unknown_does_not_guess_lo():
    text, _ = _einval(ipvs.Destination("192.168.1.1", 80), None)
    assert "lo is" not in text and "lo up" not in text


def test_einval_multicast_is_named_whatever_lo_is():
    for lo in (True, False, None):
        text, asked = _einval(ipvs.Destination("224.0.0.1", 80), lo)
        assert "224.0.0.1 is not a unicast address (a multicast address)" in text and "lo" not in text.replace("local", "")
        assert not asked        # decided from the address alone
    text, _ = _einval(ipvs.Destination("255.255.255.255", 80), False)
    assert "broadcast address" in text


def test_einval_lo_question_failing_is_unknown():
    def boom():
        raise ValueError("closed")
    e = errors.from_errno("add_destination", errno.EINVAL, _service=SVC,
                          _dest=ipvs.Destination("192.168.1.1", 80), _lo_up=boom)
    assert "lo is down" not in str(e) and "unicast" in str(e)


# -- ipvsadm's wording ----------------------------------------------------------

@pytest.mark.parametrize("op,err,text", [
    ("add_service", errno.EEXIST, "Service already exists"),
    ("add_destination", errno.EEXIST, "Destination already exists"),
    ("add_destination", errno.ESRCH, "Service not defined"),
    ("update_destination", errno.ESRCH, "Service not defined"),
    ("delete_destination", errno.ESRCH, "Service not defined"),
    ("stop_daemon", errno.ESRCH, "No daemon is running"),
    ("delete_service", errno.ESRCH, "No such service"),
    ("add_service", errno.ENOENT, "Scheduler or persistence engine not found"),
    ("update_service", errno.ENOENT, "Scheduler or persistence engine not found"),
    ("delete_destination", errno.ENOENT, "No such destination"),
    ("add_service", errno.EINVAL, "Invalid operation.  Possibly wrong module version, address not unicast, ..."),
    ("flush", errno.EPERM, "Permission denied (you must be root)"),
    ("start_daemon", errno.ENODEV, "No such device"),
])
def test_ipvsadm_message(op, err, text):
    assert errors.ipvsadm_message(errors.from_errno(op, err)) == text


def test_ipvsadm_message_open_and_plain():
    e = errors.from_errno("open", errno.ENOENT)
    assert errors.ipvsadm_message(e) == (
        "Can't initialize ipvs: Protocol not available\n"
        "Are you sure that IP Virtual Server is built in the kernel or as module?")
    assert errors.ipvsadm_message(ValueError("bad")) == "bad"
    assert errors.no_such_interface() == "No such device"
