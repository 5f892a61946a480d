"""Privileges: without CAP_NET_ADMIN every IPVS call raises
IPVSPermissionError (a PermissionError). Run in a child process whose
capability bounding set lacks cap_net_admin (capsh --drop, libcap2-bin);
opening the handle still works on netlink (creating the socket and resolving
the generic netlink family need no capability), every command fails with
EPERM."""
import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

SNIPPET = r'''
import json, sys
import ipvs
from ipvs import Service, Destination, Daemon, DaemonState
ns, backend = sys.argv[1], sys.argv[2]
caps = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
out = {"capeff": caps}
try:
    lb = ipvs.IPVS(netns=ns, backend=backend)
except ipvs.IPVSError as e:
    out["open"] = [type(e).__name__, e.errno, str(e), isinstance(e, PermissionError)]
    print(json.dumps(out)); sys.exit(0)
out["open"] = "ok"
svc = Service(address="10.50.0.1", port=80, scheduler="rr")
d = Destination("192.168.50.1", 80)
calls = {
    "info": lambda: lb.info(),
    "services": lambda: lb.services(),
    "services_consistent": lambda: lb.services(consistent=True),
    "get_service": lambda: lb.get_service(svc),
    "add_service": lambda: lb.add_service(svc),
    "update_service": lambda: lb.update_service(svc),
    "delete_service": lambda: lb.delete_service(svc),
    "destinations": lambda: lb.destinations(svc),
    "add_destination": lambda: lb.add_destination(svc, d),
    "update_destination": lambda: lb.update_destination(svc, d),
    "delete_destination": lambda: lb.delete_destination(svc, d),
    "table": lambda: lb.table(),
    "flush": lambda: lb.flush(),
    "zero": lambda: lb.zero(),
    "timeouts": lambda: lb.timeouts(),
    "set_timeouts": lambda: lb.set_timeouts(tcp=100),
    "daemons": lambda: lb.daemons(),
    "start_daemon": lambda: lb.start_daemon(Daemon(DaemonState.MASTER, "lo")),
    "stop_daemon": lambda: lb.stop_daemon(DaemonState.MASTER),
    "apply": lambda: lb.apply({svc: [d]}),
}
def batch():
    with lb.batch() as b:
        b.add_service(svc)
calls["batch"] = batch
res = {}
for name, fn in calls.items():
    try:
        fn()
        res[name] = "no error"
    except ipvs.BatchError as e:
        x = e.failures[0][1]
        res[name] = ["BatchError/" + type(x).__name__, x.errno, str(x), isinstance(x, PermissionError)]
    except Exception as e:
        res[name] = [type(e).__name__, getattr(e, "errno", None), str(e), isinstance(e, PermissionError)]
out["calls"] = res
lb.close()
print(json.dumps(out))
'''


def _run_without_net_admin(ns, backend):
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.fail("capsh missing (apt-get install libcap2-bin)")
    cmd = [capsh, "--drop=cap_net_admin", "--",
           "-c", 'exec "$0" -c "$1" "$2" "$3"', sys.executable, SNIPPET, ns, backend]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
def test_every_call_without_cap_net_admin_is_a_permission_error(ipvs_netns, backend, ipvsadm):
    out = _run_without_net_admin(ipvs_netns, backend)
    assert not int(out["capeff"], 16) & (1 << 12)         # really no CAP_NET_ADMIN
    if out["open"] != "ok":
        # sockopt: opening already asks the kernel (GET_VERSION), which is EPERM
        name, err, msg, is_perm = out["open"]
        assert backend == "sockopt", out
        assert (name, err, is_perm) == ("IPVSPermissionError", 1, True), out
        assert "CAP_NET_ADMIN" in msg
        return
    for call, r in out["calls"].items():
        assert r != "no error", call
        name, err, msg, is_perm = r
        assert name.endswith("IPVSPermissionError") and err == 1 and is_perm, (call, r)
        assert "CAP_NET_ADMIN" in msg, (call, msg)
    assert ipvsadm("-Sn") == ""            # and nothing changed
