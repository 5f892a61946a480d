"""Concurrency: 8 threads x 1000 mixed operations (add/update/delete services
and destinations, listings), on one shared handle and on one handle per
thread. Every reply must belong to its request (no sequence mix-up: each
thread checks every result and error against its own model), nothing may
hang (joins have timeouts), and the final table, read with ipvsadm -Sn, must
be exactly the union of the threads' models."""
import random
import threading
import time

import pytest

import ipvs
from ipvs import Destination, Forward, Service

pytestmark = pytest.mark.kernel

THREADS = 8
OPS = 1000
JOIN_TIMEOUT = 300


class Worker:
    """One thread's deterministic random walk over its own services
    (VIP 10.20.T.x), with a model of what the kernel must hold."""

    def __init__(self, tid, lb, seed):
        self.tid = tid
        self.lb = lb
        self.rng = random.Random(seed)
        self.svcs = {}        # key -> Service
        self.dests = {}       # service key -> {dest key: Destination}
        self.counts = {}
        self.error = None

    def _svc(self):
        port = self.rng.randrange(1, 9)
        return Service(address="10.20.%d.1" % self.tid, port=port,
                       scheduler=self.rng.choice(["rr", "wrr", "wlc"]))

    def _dest(self, svc):
        return Destination("192.168.%d.%d" % (self.tid, self.rng.randrange(1, 6)), svc.port,
                           weight=self.rng.randrange(0, 10),
                           forward=self.rng.choice([Forward.ROUTE, Forward.MASQ]))

    def step(self):
        lb, rng = self.lb, self.rng
        op = rng.choice(["add_service", "update_service", "delete_service",
                         "add_destination", "add_destination", "update_destination",
                         "delete_destination", "services", "destinations", "get_service",
                         "batch"])
        self.counts[op] = self.counts.get(op, 0) + 1
        svc = self._svc()
        exists = svc.key in self.svcs
        if op == "add_service":
            if exists:
                with pytest.raises(ipvs.ServiceExistsError):
                    lb.add_service(svc)
            else:
                lb.add_service(svc)
                self.svcs[svc.key] = svc
                self.dests[svc.key] = {}
        elif op == "update_service":
            if exists:
                lb.update_service(svc)
                self.svcs[svc.key] = svc
            else:
                with pytest.raises(ipvs.ServiceNotFoundError):
                    lb.update_service(svc)
        elif op == "delete_service":
            if exists:
                lb.delete_service(svc)
                del self.svcs[svc.key]
                del self.dests[svc.key]
            else:
                with pytest.raises(ipvs.ServiceNotFoundError):
                    lb.delete_service(svc)
        elif op in ("add_destination", "update_destination", "delete_destination"):
            d = self._dest(svc)
            if not exists:
                with pytest.raises(ipvs.ServiceNotFoundError):
                    getattr(lb, op)(svc, d)
                return
            have = d.key in self.dests[svc.key]
            if op == "add_destination" and have:
                with pytest.raises(ipvs.DestinationExistsError):
                    lb.add_destination(svc, d)
            elif op != "add_destination" and not have:
                with pytest.raises(ipvs.DestinationNotFoundError):
                    getattr(lb, op)(svc, d)
            else:
                getattr(lb, op)(svc, d)
                if op == "delete_destination":
                    del self.dests[svc.key][d.key]
                else:
                    self.dests[svc.key][d.key] = d
        elif op == "services":
            # Other threads change their services meanwhile; with a handle per
            # thread that races our dump (a multi-part dump may then skip or
            # repeat entries), so read consistently: the result must then be
            # exact for our part, which nobody else touches. Under that much
            # churn the consistent read may give up: counted, allowed.
            try:
                allsvcs = lb.services(consistent=True)
            except ipvs.errors.InconsistentDumpError:
                self.counts["gave_up"] = self.counts.get("gave_up", 0) + 1
                return
            mine = [s for s in allsvcs if s.address == svc.address]
            assert sorted(mine, key=repr) == sorted(self.svcs.values(), key=repr)
        elif op == "destinations":
            if not exists:
                # both backends: a missing service is ServiceNotFoundError
                with pytest.raises(ipvs.ServiceNotFoundError):
                    lb.destinations(svc)
                return
            got = lb.destinations(svc)
            want = self.dests.get(svc.key, {})
            assert len(got) == len(want) and {d.key: d for d in got} == want
        elif op == "get_service":
            if exists:
                assert lb.get_service(svc) == self.svcs[svc.key]
            else:
                with pytest.raises(ipvs.ServiceNotFoundError):
                    lb.get_service(svc)
        elif op == "batch":
            # a service toggled with a destination, in one batch
            if exists:
                with lb.batch() as b:
                    b.delete_service(svc)
                del self.svcs[svc.key]
                del self.dests[svc.key]
            else:
                d = self._dest(svc)
                with lb.batch() as b:
                    b.add_service(svc)
                    b.add_destination(svc, d)
                self.svcs[svc.key] = svc
                self.dests[svc.key] = {d.key: d}

    def run(self, start):
        try:
            start.wait()
            for _ in range(OPS):
                self.step()
        except BaseException as e:  # reported by the main thread
            self.error = e

    def sn_lines(self):
        lines = set()
        for key, svc in self.svcs.items():
            lines.add("-A -t %s:%d -s %s" % (svc.address, svc.port, svc.scheduler))
            for d in self.dests[key].values():
                fwd = {Forward.ROUTE: "-g", Forward.MASQ: "-m"}[d.forward]
                lines.add("-a -t %s:%d -r %s:%d %s -w %d"
                          % (svc.address, svc.port, d.address, d.port, fwd, d.weight))
        return lines


def _run(handles, ipvsadm, seed):
    workers = [Worker(t, handles[t], seed * 100 + t) for t in range(THREADS)]
    start = threading.Event()
    threads = [threading.Thread(target=w.run, args=(start,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    start.set()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    dt = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "deadlock: a thread did not finish"
    for w in workers:
        if w.error is not None:
            raise w.error
    want = set().union(*(w.sn_lines() for w in workers))
    got = set(ipvsadm("-Sn").splitlines())
    assert got == want
    total = {}
    for w in workers:
        for k, v in w.counts.items():
            total[k] = total.get(k, 0) + v
    return dt, len(want), total


def test_threads_share_one_handle(ipvs_handle, ipvsadm):
    handles = [ipvs_handle] * THREADS
    dt, n, counts = _run(handles, ipvsadm, seed=1)
    print("\n%s shared handle: %d x %d ops in %.2fs (%d ops/s); final %d -Sn lines; %s"
          % (ipvs_handle.backend, THREADS, OPS, dt, THREADS * OPS / dt, n, counts))


def test_threads_with_one_handle_each(ipvs_netns, ipvs_backend, ipvsadm):
    handles = [ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend) for _ in range(THREADS)]
    try:
        dt, n, counts = _run(handles, ipvsadm, seed=2)
    finally:
        for h in handles:
            h.close()
    print("\n%s handle per thread: %d x %d ops in %.2fs (%d ops/s); final %d -Sn lines; "
          "consistent reads given up: %d of %d"
          % (ipvs_backend, THREADS, OPS, dt, THREADS * OPS / dt, n, counts.get("gave_up", 0),
             counts["services"]))


def test_close_while_other_threads_call(ipvs_netns, ipvs_backend):
    """close() from one thread while others are in calls: the others finish
    their call or get ValueError (closed), never crash or hang."""
    lb = ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend)
    errors = []
    start = threading.Event()

    def reader():
        start.wait()
        try:
            for _ in range(100000):
                lb.services()
        except ValueError:
            return
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    start.set()
    time.sleep(0.2)
    lb.close()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert lb.closed
