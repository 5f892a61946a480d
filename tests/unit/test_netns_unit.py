"""Pure parts of ipvs.netns: no namespace is created, nothing is mounted."""

import os

import pytest

from ipvs import netns


@pytest.mark.parametrize("name", ["a", "ipvs-test-1", "x" * 255, "with space", "ünï", "-", "a.b", "..."])
def test_valid_names(name):
    assert netns.validate_name(name) == name
    assert netns.path(name) == "/run/netns/" + name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/abs", "x" * 256, "nul\0byte", "é" * 128])
def test_invalid_names(name):
    with pytest.raises(ValueError):
        netns.validate_name(name)
    with pytest.raises(ValueError):
        netns.path(name)
    with pytest.raises(ValueError):
        netns.exists(name)
    with pytest.raises(ValueError):
        netns.create(name)
    with pytest.raises(ValueError):
        netns.remove(name)


@pytest.mark.parametrize("name", [None, 3, b"bytes", ["a"]])
def test_name_type(name):
    with pytest.raises(TypeError):
        netns.validate_name(name)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(netns, "NETNS_RUN_DIR", str(tmp_path))
    return tmp_path


def test_names_and_exists_read_the_run_dir(run_dir):
    assert netns.names() == []
    for n in ("b", "a", "c"):
        (run_dir / n).touch()
    assert netns.names() == ["a", "b", "c"]
    assert netns.exists("a")
    assert not netns.exists("zz")
    assert netns.path("a") == str(run_dir / "a")


def test_names_without_run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(netns, "NETNS_RUN_DIR", str(tmp_path / "missing"))
    assert netns.names() == []
    assert not netns.exists("a")


def test_remove_missing_raises_file_not_found(run_dir):
    with pytest.raises(FileNotFoundError):
        netns.remove("nope")


def test_remove_stale_file(run_dir):
    # a file that is not a mount point (e.g. left by a crash) is removed too
    (run_dir / "stale").touch()
    if os.geteuid() != 0:
        pytest.skip("umount2 needs root to report EINVAL rather than EPERM")
    netns.remove("stale")
    assert not netns.exists("stale")


@pytest.mark.parametrize("target", [None, 1.5, True, object()])
def test_open_netns_rejects_bad_types(target):
    with pytest.raises(TypeError):
        netns.open_netns(target)


def test_open_netns_missing_name(run_dir):
    with pytest.raises(FileNotFoundError):
        netns.open_netns("nope")


def test_enter_missing_leaves_thread_alone(run_dir):
    before = netns.current_id()
    with pytest.raises(FileNotFoundError):
        with netns.enter("nope"):
            pass  # pragma: no cover
    assert netns.current_id() == before


def test_enter_own_namespace_by_path_and_fd():
    # entering the namespace we are in needs CAP_SYS_ADMIN; skip without it
    before = netns.current_id()
    fd = os.open(netns.SELF_NS, os.O_RDONLY)
    try:
        try:
            with netns.enter(fd):
                assert netns.current_id() == before
        except PermissionError:
            pytest.skip("setns needs CAP_SYS_ADMIN")
        with netns.enter(netns.SELF_NS):
            assert netns.current_id() == before
    finally:
        os.close(fd)
    assert netns.current_id() == before


@pytest.mark.parametrize("ifname", ["", "x" * 16, "a/b"])
def test_link_up_rejects_bad_ifname(ifname):
    with pytest.raises(ValueError):
        netns.link_up("whatever", ifname)
