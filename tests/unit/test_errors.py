"""The errno -> exception table."""
import errno
import pickle

import pytest

import ipvs
from ipvs import errors


@pytest.mark.parametrize("op,err,cls,extra_base", [
    ("add_service", errno.EEXIST, ipvs.ServiceExistsError, FileExistsError),
    ("add_service", errno.ENOENT, ipvs.SchedulerNotFoundError, LookupError),
    ("update_service", errno.ESRCH, ipvs.ServiceNotFoundError, LookupError),
    ("delete_service", errno.ESRCH, ipvs.ServiceNotFoundError, LookupError),
    ("get_service", errno.ESRCH, ipvs.ServiceNotFoundError, LookupError),
    ("zero", errno.ESRCH, ipvs.ServiceNotFoundError, LookupError),
    ("add_destination", errno.ESRCH, ipvs.ServiceNotFoundError, LookupError),
    ("add_destination", errno.EEXIST, ipvs.DestinationExistsError, FileExistsError),
    ("update_destination", errno.ENOENT, ipvs.DestinationNotFoundError, LookupError),
    ("delete_destination", errno.ENOENT, ipvs.DestinationNotFoundError, LookupError),
    ("delete_destination", errno.ESRCH, ipvs.ServiceNotFoundError, LookupError),
    ("add_destination", errno.ERANGE, ipvs.InvalidRequestError, ValueError),
    ("add_service", errno.EINVAL, ipvs.InvalidRequestError, ValueError),
    ("start_daemon", errno.EEXIST, ipvs.DaemonExistsError, FileExistsError),
    ("start_daemon", errno.ENODEV, ipvs.InvalidRequestError, ValueError),
    ("stop_daemon", errno.ESRCH, ipvs.DaemonNotRunningError, LookupError),
    ("services", errno.EPERM, ipvs.IPVSPermissionError, PermissionError),
    ("flush", errno.EACCES, ipvs.IPVSPermissionError, PermissionError),
    ("info", errno.ETIMEDOUT, ipvs.IPVSTimeoutError, TimeoutError),
    ("add_service", errno.EOPNOTSUPP, ipvs.UnsupportedError, ipvs.IPVSError),
    ("open", errno.ENOENT, ipvs.IPVSUnavailableError, ipvs.IPVSError),
    ("services", errno.ENOPROTOOPT, ipvs.IPVSUnavailableError, ipvs.IPVSError),
    ("add_service", errno.EFAULT, ipvs.InvalidRequestError, ValueError),
])
def test_table(op, err, cls, extra_base):
    e = errors.from_errno(op, err, service="service TCP 10.0.0.1:80", destination="destination 10.0.1.1:80",
                          scheduler="rr", pe="", interface="eth9", state="master")
    assert type(e) is cls
    assert isinstance(e, ipvs.IPVSError) and isinstance(e, OSError) and isinstance(e, extra_base)
    assert e.errno == err and e.operation == op
    assert op.split("_")[0] in str(e) or op in ("open", "info")


def test_messages_say_what_happened():
    e = errors.from_errno("add_service", errno.ENOENT, service="service TCP 1.2.3.4:80", scheduler="nosuch")
    assert "scheduler 'nosuch' not found" in str(e)
    e = errors.from_errno("delete_destination", errno.ENOENT, service="service TCP 1.2.3.4:80",
                          destination="destination 10.0.0.2:80")
    assert "no such destination 10.0.0.2:80 in service TCP 1.2.3.4:80" in str(e)
    assert "destination destination" not in str(e)
    e = errors.from_errno("start_daemon", errno.ENODEV, interface="eth9")
    assert "eth9" in str(e)
    e = errors.from_errno("add_service", errno.EINVAL, kernel_message="bad netmask", service="s")
    assert "bad netmask" in str(e) and e.kernel_message == "bad netmask"
    e = errors.from_errno("frobnicate", errno.EIO)
    assert type(e) is ipvs.IPVSError and "frobnicate" in str(e)


def test_pe_not_found_when_scheduler_module_loaded(monkeypatch):
    monkeypatch.setattr(errors, "_module_loaded", lambda name: name == "ip_vs_rr")
    e = errors.from_errno("add_service", errno.ENOENT, scheduler="rr", pe="nope", service="s")
    assert type(e) is ipvs.PersistenceEngineNotFoundError and "nope" in str(e)
    monkeypatch.setattr(errors, "_module_loaded", lambda name: name == "ip_vs_pe_sip")
    e = errors.from_errno("add_service", errno.ENOENT, scheduler="nosuch", pe="sip", service="s")
    assert type(e) is ipvs.SchedulerNotFoundError


def test_hierarchy():
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and name != "IPVSError":
            assert issubclass(obj, ipvs.IPVSError)
    assert issubclass(ipvs.IPVSError, OSError)


def test_batch_error_and_pickle():
    e1 = errors.from_errno("add_service", errno.EEXIST, service="s1")
    be = ipvs.BatchError([("call1", e1)], succeeded=3)
    assert be.failures == [("call1", e1)] and be.succeeded == 3 and be.errno == errno.EEXIST
    assert "1 of 4" in str(be)
    e2 = pickle.loads(pickle.dumps(e1))
    assert type(e2) is type(e1) and e2.errno == e1.errno and e2.operation == e1.operation
