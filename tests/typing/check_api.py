"""Type-checked, never run: exercises the public API under ``mypy --strict``.

    mypy --strict tests/typing/check_api.py      (config: [tool.mypy] in pyproject.toml)

If the stubs (ipvs/_libipvs.pyi), the annotations of the package or the
``py.typed`` marker regress, this file stops type-checking.  It is not a test
module (no ``test_`` prefix) and has no ``__init__.py``: pytest never collects
it, and it must never be executed (it would touch the kernel's IPVS table).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Dict, List, Optional, Tuple, Union

import ipvs
import ipvs.netns
from ipvs import (IPVS, BatchError, Change, Destination, DestinationExistsError, Forward,
                  IPVSError, Plan, Protocol, Service, ServiceFlags, ServiceNotFoundError, Stats,
                  TunnelFlags, TunnelType)


def handle_basics() -> Tuple[str, str, Tuple[int, int, int], int]:
    with IPVS(backend="netlink", netns="blue", timeout=2.5) as lb:
        backend: str = lb.backend
        info = lb.info()
        version: str = info.version
        closed: bool = lb.closed
        assert not closed
        fd: int = lb.fileno()
        assert fd >= 0
        return backend, version, info.version_info, info.conn_tab_size


def services_and_destinations(lb: IPVS) -> List[Tuple[Service, List[Destination]]]:
    web = Service(address="10.0.0.1", port=80, protocol="tcp", scheduler="wlc")
    mark = Service(fwmark=7, family=socket.AF_INET6, scheduler="mh",
                   flags=ServiceFlags.PERSISTENT | ServiceFlags.MH_PORT,
                   timeout=300, netmask=64)
    real = Destination(address="192.168.1.10", port=8080, weight=3, forward=Forward.MASQ,
                       upper_threshold=100, lower_threshold=10)
    tun = Destination(address="2001:db8::10", forward=Forward.TUNNEL,
                      tunnel_type=TunnelType.GUE, tunnel_port=6080,
                      tunnel_flags=TunnelFlags.CSUM)
    lb.add_service(web)
    lb.update_service(web.replace(scheduler="rr"))
    lb.add_destination(web, real)
    lb.update_destination(web, real.replace(weight=5))
    lb.add_service(mark)
    lb.add_destination(mark, tun)
    out: List[Tuple[Service, List[Destination]]] = []
    for svc in lb.services():
        addr: Optional[ipaddress.IPv4Address | ipaddress.IPv6Address] = svc.address
        proto: Protocol = svc.protocol
        fam: socket.AddressFamily = svc.family
        stats: Optional[Stats] = svc.stats
        if stats is not None:
            total: int = stats.bytes_in + stats.bytes_out
            assert total >= 0
        assert addr is None or fam in (socket.AF_INET, socket.AF_INET6)
        assert proto in (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
        dests = lb.destinations(svc)
        for d in dests:
            conns: int = d.active_connections + d.inactive_connections
            fwd: Forward = d.forward
            assert conns >= 0 and fwd is not None
        out.append((svc, dests))
    got: Service = lb.get_service(web)
    key: Tuple[object, ...] = got.key
    assert key
    table: Dict[Service, List[Destination]] = lb.table()
    assert table is not None
    lb.delete_destination(web, real)
    lb.delete_service(web)
    lb.zero()
    lb.zero(mark)
    lb.flush()
    return out


def settings(lb: IPVS) -> int:
    t = lb.timeouts()
    lb.set_timeouts(tcp=900, udp=300)
    lb.set_timeouts(tcp_fin=120)
    daemon = ipvs.Daemon(ipvs.DaemonState.MASTER, "eth0", sync_id=3)
    lb.start_daemon(daemon)
    running: List[ipvs.Daemon] = lb.daemons()
    lb.stop_daemon(ipvs.DaemonState.MASTER)
    lb.stop_daemon("backup")
    conns: List[ipvs.Connection] = lb.connections()
    total: ipvs.Stats = lb.stats()
    return t.tcp + t.tcp_fin + t.udp + len(running) + len(conns) + total.connections


def bulk(lb: IPVS, svc: Service, dests: List[Destination]) -> int:
    try:
        with lb.batch() as b:
            b.add_service(svc)
            for d in dests:
                b.add_destination(svc, d)
            b.update_service(svc)
            b.update_destination(svc, dests[0])
            b.delete_destination(svc, dests[0])
            b.delete_service(svc)
    except BatchError as e:
        for call, exc in e.failures:
            err: IPVSError = exc
            position: int = call.index
            method: str = call.method
            where: Optional[Destination] = call.destination
            print(call.service, position, method, where, err.errno, err.operation)
        return e.succeeded
    lb.modify_service(svc, scheduler="rr")
    lb.modify_destination(svc, dests[0], weight=0)
    connections: int = svc.stats.connections + dests[0].stats.connections
    port: Optional[int] = Destination("192.168.1.1").port
    print(connections, port)
    lb.apply({svc: dests}, prune="destinations")
    plan: Plan = lb.apply({svc: dests, svc.replace(port=443): []}, prune=False, dry_run=True)
    changes: List[Change] = plan.changes
    for c in changes:
        action: str = c.action
        target: Optional[Destination] = c.destination
        print(action, c.service, target)
    return len(plan) if plan else 0


def errors(lb: IPVS, svc: Service) -> Optional[str]:
    try:
        lb.add_service(svc)
    except ipvs.ServiceExistsError as e:
        assert isinstance(e, FileExistsError)
        return e.operation
    except ServiceNotFoundError as e:
        assert isinstance(e, LookupError)
    except DestinationExistsError:
        pass
    except (ipvs.IPVSPermissionError, ipvs.IPVSTimeoutError, ipvs.IPVSUnavailableError,
            ipvs.UnsupportedError, ipvs.InvalidRequestError, ipvs.SchedulerNotFoundError,
            ipvs.PersistenceEngineNotFoundError, ipvs.DaemonExistsError,
            ipvs.DaemonNotRunningError, ipvs.DestinationNotFoundError) as e:
        code: Optional[int] = e.errno
        return "%s: %s %s" % (e.operation, code, e.strerror)
    except IPVSError as e:
        msg: Optional[str] = e.kernel_message
        return msg
    return None


async def asyncio_api(svc: Service, dests: List[Destination]) -> int:
    """AsyncIPVS (ipvs/_async.pyi): the same methods as coroutines."""
    async with ipvs.AsyncIPVS(backend="auto", netns="blue", timeout=2.0) as lb:
        backend: str = lb.backend
        closed: bool = lb.closed
        timeout: Optional[float] = lb.timeout
        lb.timeout = 1.5
        info: ipvs.Info = await lb.info()
        await lb.add_service(svc)
        await lb.add_destination(svc, dests[0])
        await lb.modify_destination(svc, dests[0], weight=3)
        table: Dict[Service, List[Destination]] = await lb.table(consistent=True)
        async with lb.batch() as b:
            for d in dests[1:]:
                b.add_destination(svc, d)
        sent: bool = b.sent
        done: Optional[int] = b.succeeded
        plan: Plan = await lb.apply({svc: dests}, prune="destinations", dry_run=True)
        t: ipvs.Timeouts = await lb.timeouts()
        await lb.flush()
        assert backend and not closed and sent and info.version
        return len(table) + len(plan) + (done or 0) + t.tcp + int(timeout or 0)


async def controllers(svc: Service, dests: List[Destination]) -> List[str]:
    """apply() for controllers: scope, current/changed by key, Change values."""
    desired: Dict[Service, List[Destination]] = {svc: dests}
    key_only = Service(address="10.0.0.1", port=80)
    with IPVS() as lb:
        lb.apply(desired, scope={svc.key})
        lb.apply(desired, scope=[svc], prune="destinations")
        plan: Plan = lb.apply(desired, current={svc: []}, changed=[key_only],
                              scope=lambda s: s.port == 80, dry_run=True)
    async with ipvs.AsyncIPVS() as alb:
        plan = await alb.apply(desired, current={svc: []}, changed=[svc], scope={svc.key})
    out: List[str] = []
    for c in plan.changes:
        before: Optional[Union[Service, Destination]] = c.before
        after: Optional[Union[Service, Destination]] = c.after
        action, service, destination = c
        out.append("%s %s %s %s %s" % (action, service, destination, before, after))
        out.append(str(c))
    since: str = ipvs.SCHEDULERS["mh"]
    out.append(since)
    return out


def namespaces() -> List[str]:
    name: str = ipvs.netns.create("blue")
    assert ipvs.netns.exists(name)
    names: List[str] = ipvs.netns.names()
    with ipvs.netns.temporary() as tmp:
        tmp_name: str = tmp
        ipvs.netns.link_up(tmp_name)
    ipvs.netns.remove("blue")
    return names


version: str = ipvs.__version__
