"""ipvs.lab, the public lab: its servers (TCP, UDP, HTTP), stopping and
starting them as seen from the client through the director, the HTTP
health status, and that closing removes every namespace (also after a
failed start)."""
from __future__ import annotations


import pytest

import ipvs
from ipvs import netns
from ipvs.lab import Lab, LabError, wait_for

PORT = 80
HTTP = 8080


@pytest.fixture(scope="module")
def lab():
    with Lab(servers=2, lifetime=300) as lab:
        with lab.ipvs() as lb:
            for port, proto, rport in ((PORT, "tcp", lab.port), (PORT, "udp", lab.port),
                                       (HTTP, "tcp", lab.http_port)):
                svc = ipvs.Service(address=lab.vip, port=port, protocol=proto, scheduler="rr")
                lb.add_service(svc)
                for rip in lab.server_addresses:
                    lb.add_destination(svc, ipvs.Destination(rip, rport, forward="masq"))
        yield lab


@pytest.fixture
def one_server(lab):
    """A table whose services have rs1 only (so every request reaches it)."""
    with lab.ipvs() as lb:
        for svc in lb.services():
            rport = lab.http_port if svc.port == HTTP else lab.port
            lb.delete_destination(svc, ipvs.Destination(lab.server_addresses[1], rport))
    try:
        yield "rs1"
    finally:
        lab.start_server("rs1")
        lab.set_http_status("rs1", 200)
        with lab.ipvs() as lb:
            for svc in lb.services():
                rport = lab.http_port if svc.port == HTTP else lab.port
                lb.add_destination(svc, ipvs.Destination(lab.server_addresses[1], rport,
                                                         forward="masq"))


def test_attributes(lab):
    assert lab.names == ["rs1", "rs2"]
    assert lab.port == 8000 and lab.http_port == 8080
    assert lab.directors == [lab.director]
    assert lab.server_addresses == ["10.200.1.2", "10.200.2.2"]
    assert lab.server_addresses6 == ["fd00:200:1::2", "fd00:200:2::2"]
    assert lab.vip == "10.200.0.100" and lab.vip6 == "fd00:200::100"
    assert all(netns.exists(n) for n in [lab.client, lab.director] + lab.servers)


def test_tcp_udp_http_through_the_director(lab):
    assert lab.run_tcp(lab.vip, PORT, 4) == {"rs1": 2, "rs2": 2}
    assert lab.run_udp(lab.vip, PORT, 4) == {"rs1": 2, "rs2": 2}
    seen = {lab.http_get(lab.vip, "/", port=HTTP)[1].strip() for _ in range(4)}
    assert seen == {"rs1", "rs2"}
    # and each server directly from the client (routed through the director)
    for name, rip in zip(lab.names, lab.server_addresses):
        assert lab.http_get(rip, "/") == (200, name + "\n")
        assert lab.http_get(rip, "/health") == (200, "%s 200\n" % name)
        assert lab.http_get(rip, "/nothing")[0] == 404


def test_stopped_server_refuses_tcp_and_is_silent_on_udp_and_http(lab, one_server):
    name = one_server
    rip = lab.server_addresses[0]
    assert lab.run_tcp(lab.vip, PORT, 2) == {name: 2}
    held, _ = lab.tcp_connect(lab.vip, PORT)
    try:
        lab.stop_server(name)
        assert not lab.server_running(name)
        # TCP: refused, through the director and directly
        with pytest.raises(ConnectionRefusedError):
            lab.tcp_connect(lab.vip, PORT)
        with pytest.raises(ConnectionRefusedError):
            lab.tcp_connect(rip, lab.port)
        # its open connection was closed with it
        held.settimeout(lab.timeout)
        try:
            assert held.recv(16) == b""
        except ConnectionResetError:
            pass
        # UDP: no answer
        with pytest.raises(OSError):      # refused (ICMP) or timed out: never a name
            lab.run_udp(lab.vip, PORT, 1, retries=0)
        # HTTP: no answer either, through the director and directly
        with pytest.raises(OSError):
            lab.http_get(lab.vip, "/health", port=HTTP)
        with pytest.raises(OSError):
            lab.http_get(rip, "/health")
        lab.stop_server(name)   # stopping twice does nothing
    finally:
        held.close()

    lab.start_server(name)
    assert lab.server_running(name)
    assert lab.run_tcp(lab.vip, PORT, 2) == {name: 2}
    assert lab.run_udp(lab.vip, PORT, 2) == {name: 2}
    assert lab.http_get(lab.vip, "/", port=HTTP) == (200, name + "\n")
    lab.start_server(name)  # starting a running server does nothing
    assert lab.run_tcp(rip, lab.port, 1) == {name: 1}


def test_health_status_seen_from_the_client(lab, one_server):
    name = one_server
    for status in (503, 404, 302, 200):
        lab.set_http_status(name, status)
        assert lab.http_get(lab.vip, "/health", port=HTTP) == (status, "%s %d\n" % (name, status))
        assert lab.http_get(lab.server_addresses[0], "/health")[0] == status
    # GET / is not the health check: always 200 with the name
    lab.set_http_status(name, 500)
    assert lab.http_get(lab.vip, "/", port=HTTP) == (200, name + "\n")
    # the status survives a stop and start
    lab.stop_server(name)
    lab.start_server(name)
    assert lab.http_get(lab.vip, "/health", port=HTTP)[0] == 500
    # the other server keeps its own status
    assert lab.http_get(lab.server_addresses[1], "/health")[0] == 200


def test_bad_arguments(lab):
    with pytest.raises(ValueError):
        lab.stop_server("rs9")
    with pytest.raises(ValueError):
        lab.set_http_status("rs1", 99)
    with pytest.raises(ValueError):
        Lab(directors=3)
    with pytest.raises(LabError):
        lab.move_vip(0)          # a single-director lab has nothing to move to
    with pytest.raises(ValueError):
        lab.ipvs(director=1)
    with pytest.raises(ValueError):
        Lab(port=8080, http_port=8080)


def test_close_removes_every_namespace():
    lab = Lab(servers=2, lifetime=60)
    lab.start()
    made = [lab.client, lab.director] + lab.servers
    assert all(netns.exists(n) for n in made)
    with lab.ipvs() as lb:
        lb.add_service(ipvs.Service(address=lab.vip, port=81))
    lab.close()
    assert not any(netns.exists(n) for n in made)
    lab.close()  # idempotent
    with pytest.raises(LabError):
        lab.stop_server("rs1")


def test_failed_start_removes_everything(monkeypatch):
    """A start that fails half way (here: the HTTP port cannot be bound)
    leaves no namespace behind."""
    import ipvs.lab as labmod

    def broken(*args, **kwargs):
        raise OSError(98, "Address already in use (injected)")

    lab = Lab(servers=2)
    monkeypatch.setattr(labmod, "_Servers", broken)
    with pytest.raises(OSError):
        lab.start()
    assert not any(netns.exists(n) for n in [lab.client, lab.director] + lab.servers)
    assert not lab.started


def test_servers_stop_by_themselves():
    with Lab(servers=1, lifetime=1.0) as lab:
        assert lab.run_tcp(lab.server_addresses[0], lab.port, 1) == {"rs1": 1}
        assert wait_for(lambda: not lab._servers.thread.is_alive(), timeout=10)
        with pytest.raises(ConnectionRefusedError):
            lab.tcp_connect(lab.server_addresses[0], lab.port)
        with pytest.raises(LabError):
            lab.stop_server("rs1")


def test_end_to_end_example_runs():
    """examples/lab_health_check.py, as a user runs it (exit status 0)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "examples" / "lab_health_check.py")],
                         capture_output=True, text=True, timeout=240, cwd=str(root))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("OK")
    assert "rs2 answers 503:" in out.stdout


def test_two_directors_move_vip():
    """directors=2: one segment, direct routing; the client's connections
    go through the director holding the VIP, and after move_vip(i) through
    the i-th (seen in each director's IPVS connection table)."""
    with Lab(servers=2, directors=2, lifetime=120) as lab:
        assert len(lab.directors) == 2 and lab.director == lab.directors[0]
        assert lab.switch is not None and netns.exists(lab.switch)
        svc = ipvs.Service(address=lab.vip, port=lab.port, scheduler="rr")
        svc6 = ipvs.Service(address=lab.vip6, port=lab.port, scheduler="rr")
        udp = ipvs.Service(address=lab.vip, port=lab.port, protocol="udp", scheduler="rr")
        for i in range(2):
            with lab.ipvs(director=i) as lb:
                lb.apply({svc: [ipvs.Destination(a, lab.port, forward="route")
                                for a in lab.server_addresses],
                          udp: [ipvs.Destination(a, lab.port, forward="route")
                                for a in lab.server_addresses],
                          svc6: [ipvs.Destination(a, lab.port, forward="route")
                                 for a in lab.server_addresses6]})

        def conns(i):
            with lab.ipvs(director=i) as lb:
                return len(lb.connections())

        assert lab.active_director == 0
        assert lab.run_tcp(lab.vip, lab.port, 4) == {"rs1": 2, "rs2": 2}
        assert lab.run_tcp(lab.vip6, lab.port, 2) == {"rs1": 1, "rs2": 1}
        assert (conns(0), conns(1)) == (6, 0)
        lab.move_vip(1)
        assert lab.active_director == 1
        assert lab.run_tcp(lab.vip, lab.port, 4) == {"rs1": 2, "rs2": 2}
        assert lab.run_udp(lab.vip, lab.port, 2) == {"rs1": 1, "rs2": 1}
        assert lab.run_tcp(lab.vip6, lab.port, 2) == {"rs1": 1, "rs2": 1}
        assert (conns(0), conns(1)) == (6, 8)
        lab.move_vip(0)
        assert lab.run_tcp(lab.vip, lab.port, 2) == {"rs1": 1, "rs2": 1}
        assert conns(0) == 8
        # the servers answer the client themselves: each got its address
        # as the VIP (direct routing), never through a director's NAT
        assert set(a for (_, a) in lab.accepted_at) == {lab.vip, lab.vip6}
        made = lab.namespaces
    assert not any(netns.exists(n) for n in made)
