"""ipvs.netns against the kernel and iproute2 (run as root, e.g. in ipvs.sandbox)."""

import os
import subprocess
import threading

import pytest

from ipvs import netns

pytestmark = pytest.mark.kernel

TEST_SERVICE = "192.0.2.77:8077"  # TEST-NET-1: never a real service


def ip_netns_list():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def ipvsadm_in(name, *args, check=True):
    cmd = ["ip", "netns", "exec", name, "ipvsadm", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check).stdout


@pytest.fixture
def fresh_name():
    name = f"ipvs-t-{os.getpid()}-{os.urandom(3).hex()}"
    yield name
    if netns.exists(name):
        netns.remove(name)


def test_create_exists_names_remove(fresh_name):
    before = netns.current_id()
    assert not netns.exists(fresh_name)
    assert netns.create(fresh_name) == f"/run/netns/{fresh_name}"
    assert netns.current_id() == before  # the caller's thread did not move
    assert netns.exists(fresh_name)
    assert fresh_name in netns.names()
    assert fresh_name in ip_netns_list()
    st = os.stat(netns.path(fresh_name))
    assert (st.st_dev, st.st_ino) != before
    netns.remove(fresh_name)
    assert not netns.exists(fresh_name)
    assert fresh_name not in netns.names()
    assert fresh_name not in ip_netns_list()


def test_create_twice_and_remove_missing(fresh_name):
    netns.create(fresh_name)
    with pytest.raises(FileExistsError):
        netns.create(fresh_name)
    netns.remove(fresh_name)
    with pytest.raises(FileNotFoundError):
        netns.remove(fresh_name)


def test_run_dir_is_shared_mount(fresh_name):
    netns.create(fresh_name)
    with open("/proc/self/mountinfo") as f:
        lines = [l.split() for l in f]
    run = [l for l in lines if l[4] == "/run/netns"]
    assert run, "/run/netns is not a mount point"
    assert any(field.startswith("shared:") for field in run[-1][6:run[-1].index("-")])
    assert any(l[4] == f"/run/netns/{fresh_name}" for l in lines)


def test_ip_netns_add_is_seen_and_removed_by_us(fresh_name):
    subprocess.run(["ip", "netns", "add", fresh_name], check=True)
    assert netns.exists(fresh_name) and fresh_name in netns.names()
    with netns.enter(fresh_name):
        assert os.path.exists("/proc/thread-self/net/ip_vs")
    netns.remove(fresh_name)
    assert fresh_name not in ip_netns_list()


def test_ours_is_usable_and_deletable_by_ip(fresh_name):
    netns.create(fresh_name)
    out = subprocess.run(["ip", "netns", "exec", fresh_name, "ip", "-o", "link"],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("\n") == 1 and "lo:" in out  # a fresh namespace: only lo
    subprocess.run(["ip", "netns", "del", fresh_name], check=True)
    assert not netns.exists(fresh_name)


def test_enter_switches_and_restores():
    before = netns.current_id()
    with netns.temporary() as name:
        target = os.stat(netns.path(name))
        with netns.enter(name):
            assert netns.current_id() == (target.st_dev, target.st_ino)
            # nested: by path, then by fd
            with netns.enter("/proc/1/ns/net"):
                assert netns.current_id() != (target.st_dev, target.st_ino)
            assert netns.current_id() == (target.st_dev, target.st_ino)
        assert netns.current_id() == before
        fd = os.open(netns.path(name), os.O_RDONLY)
        try:
            with netns.enter(fd):
                assert netns.current_id() == (target.st_dev, target.st_ino)
        finally:
            os.close(fd)
    assert netns.current_id() == before


def test_enter_restores_when_body_raises():
    before = netns.current_id()
    with netns.temporary() as name:
        with pytest.raises(KeyError):
            with netns.enter(name):
                assert netns.current_id() != before
                raise KeyError("boom")
    assert netns.current_id() == before


def test_enter_is_per_thread():
    main_before = netns.current_id()
    seen = {}
    with netns.temporary() as name:
        inside = threading.Event()
        release = threading.Event()

        def worker():
            with netns.enter(name):
                seen["worker"] = netns.current_id()
                inside.set()
                release.wait(10)
            seen["after"] = netns.current_id()

        t = threading.Thread(target=worker)
        t.start()
        assert inside.wait(10)
        assert netns.current_id() == main_before  # the main thread did not move
        release.set()
        t.join()
    assert seen["worker"] != main_before
    assert seen["after"] == main_before  # the worker was restored too
    assert netns.current_id() == main_before


def test_link_up(fresh_name):
    netns.create(fresh_name)
    show = ["ip", "-n", fresh_name, "-o", "link", "show", "lo"]
    out = subprocess.run(show, capture_output=True, text=True, check=True).stdout
    assert "state DOWN" in out
    before = netns.current_id()
    netns.link_up(fresh_name)
    assert netns.current_id() == before
    out = subprocess.run(show, capture_output=True, text=True, check=True).stdout
    assert ",UP" in out and "state DOWN" not in out
    netns.link_up(fresh_name)  # idempotent
    with pytest.raises(OSError):
        netns.link_up(fresh_name, "nosuchif0")


def test_temporary_cleans_up():
    with netns.temporary(prefix="ipvs-tmp-") as name:
        assert name.startswith("ipvs-tmp-") and netns.exists(name)
    assert not netns.exists(name)
    with pytest.raises(RuntimeError):
        with netns.temporary() as name2:
            raise RuntimeError
    assert not netns.exists(name2)


def test_many_namespaces_do_not_leak():
    start = set(netns.names())
    for _ in range(20):
        with netns.temporary():
            pass
    assert set(netns.names()) == start


def test_two_namespaces_are_isolated():
    start_table = open("/proc/thread-self/net/ip_vs").read()
    with netns.temporary() as a, netns.temporary() as b:
        netns.link_up(a)
        netns.link_up(b)
        ipvsadm_in(a, "-A", "-t", TEST_SERVICE, "-s", "rr")
        ipvsadm_in(a, "-a", "-t", TEST_SERVICE, "-r", "127.0.0.1:8077", "-m")
        assert "192.0.2.77:8077" in ipvsadm_in(a, "-Ln")
        assert "192.0.2.77:8077" not in ipvsadm_in(b, "-Ln")
        assert "192.0.2.77" not in open("/proc/thread-self/net/ip_vs").read()
        with netns.enter(a):
            # hex address of 192.0.2.77 as /proc/net/ip_vs shows it
            assert "C000024D:1F8D" in open("/proc/thread-self/net/ip_vs").read()
        with netns.enter(b):
            assert "C000024D" not in open("/proc/thread-self/net/ip_vs").read()
    assert open("/proc/thread-self/net/ip_vs").read() == start_table
