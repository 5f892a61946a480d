"""The director at keepalived's scale, in a kernel with IPVS (the sandbox):

    python -m ipvs.sandbox --mem 2048M -- .venv/bin/python \
        benchmarks/bench_director_scale.py [--services 2300] [--servers 16]

A real director process (``python -m ipvs.director``) on a fresh network
namespace with 2,300 services x 16 real servers (36,800 distinct endpoints).
Checks are type "none" (always up): what is measured is the director's own
work (file, plan, kernel writes), not the checks'.

* cold start: process start until the whole table is in the kernel (the
  "started" event; the table is then dumped and counted);
* a reload that changes nothing: the calls written (the reload event's
  "calls", and the table compared before and after);
* a reload that changes one real server's weight: SIGHUP until that weight
  reads back from the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ipvs  # noqa: E402
from ipvs import netns  # noqa: E402


def load() -> str:
    with open("/proc/loadavg") as f:
        return "load %s" % " ".join(f.read().split()[:3])


def config_text(ns: str, sock: str, services: int, servers: int,
                weights: Dict[int, int]) -> str:
    out = ['[director]\nnetns = "%s"\ncontrol = "%s"\nstate_file = ""\n'
           'resync_interval = 600\n' % (ns, sock)]
    for s in range(services):
        out.append('[[service]]\naddress = "10.%d.%d.1"\nport = 80\nscheduler = "wlc"\n'
                   '[service.check]\ntype = "none"\n' % (s // 256, s % 256))
        for r in range(servers):
            i = s * servers + r
            out.append('[[service.real_server]]\naddress = "10.%d.%d.%d"\nport = 8080\n'
                       'weight = %d\nforward = "masq"\n'
                       % (100 + s // 256, s % 256, r + 2, weights.get(i, 1)))
    return "".join(out)


def events(log: str) -> List[Dict[str, Any]]:
    out = []
    with open(log) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_event(log: str, name: str, after: int, limit: float = 120.0,
               proc: Any = None) -> Dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            with open(log) as f:
                raise AssertionError("director exited: " + f.read()[-3000:])
        evs = [e for e in events(log)[after:] if e.get("event") in (name, "reload_failed")]
        if evs:
            assert evs[0]["event"] == name, evs[0]
            return evs[0]
        time.sleep(0.01)
    raise AssertionError("no %s event within %gs" % (name, limit))


def table_snapshot(ns: str) -> Dict[Any, Any]:
    with ipvs.IPVS(netns=ns) as h:
        return {svc.key: sorted((d.key, d.weight) for d in dests)
                for svc, dests in h.table().items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=2300)
    ap.add_argument("--servers", type=int, default=16)
    args = ap.parse_args()
    total = args.services * args.servers
    tmp = tempfile.mkdtemp(prefix="bench-director-")
    ns = "bench-director-%d" % os.getpid()
    netns.create(ns)
    subprocess.check_call(["ip", "-n", ns, "link", "set", "lo", "up"])
    sock = os.path.join(tmp, "ctl.sock")
    path = os.path.join(tmp, "director.toml")
    log = os.path.join(tmp, "stderr.log")
    with open(path, "w") as f:
        f.write(config_text(ns, sock, args.services, args.servers, {}))
    print("%d services x %d real servers = %d endpoints, file %d bytes; checks type none (%s)"
          % (args.services, args.servers, total, os.path.getsize(path), load()))
    proc = None
    rc = 0
    try:
        err = open(log, "ab")
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "ipvs.director", "-c", path,
                                 "--log-format", "json"], stdout=subprocess.DEVNULL, stderr=err)
        ev = wait_event(log, "started", 0, proc=proc)
        cold = ev["time"] - t0
        snap = table_snapshot(ns)
        n = sum(len(v) for v in snap.values())
        ok = cold <= 5.0 and n == total
        rc |= not ok
        print("cold start: %d services, %d destinations in the kernel %.2f s after the "
              "process started; target <= 5 s: %s (%s)" % (len(snap), n, cold,
                                                           "MET" if ok else "MISSED", load()))

        # a reload that changes nothing
        mark = len(events(log))
        t1 = time.time()
        proc.send_signal(signal.SIGHUP)
        ev = wait_event(log, "reload", mark)
        same = table_snapshot(ns) == snap
        ok = ev["calls"] == 0 and same
        rc |= not ok
        print("no-change reload: %d kernel writes, done %.2f s after SIGHUP, table unchanged: "
              "%s; target 0 writes: %s (%s)" % (ev["calls"], ev["time"] - t1, same,
                                                "MET" if ok else "MISSED", load()))

        # a reload that changes one real server's weight
        victim = total // 2 + 3
        s, r = divmod(victim, args.servers)
        svc = ipvs.Service(address="10.%d.%d.1" % (s // 256, s % 256), port=80)
        addr = "10.%d.%d.%d" % (100 + s // 256, s % 256, r + 2)
        with open(path + ".new", "w") as f:
            f.write(config_text(ns, sock, args.services, args.servers, {victim: 5}))
        os.replace(path + ".new", path)
        mark = len(events(log))
        with ipvs.IPVS(netns=ns) as h:
            t1 = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            applied = None
            while time.monotonic() - t1 < 30:
                w = {str(d.address): d.weight for d in h.destinations(svc)}
                if w.get(addr) == 5:
                    applied = time.monotonic() - t1
                    break
                time.sleep(0.005)
        ev = wait_event(log, "reload", mark)
        ok = applied is not None and applied <= 1.0 and ev["calls"] == 1
        rc |= not ok
        print("one-server reload: weight of %s in %s read back %.3f s after SIGHUP, %d kernel "
              "write(s); target <= 1 s: %s (%s)" % (
                  addr, svc.address, applied if applied is not None else float("nan"),
                  ev["calls"], "MET" if ok else "MISSED", load()))
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        err.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        netns.remove(ns)
    return rc


if __name__ == "__main__":
    sys.exit(main())
