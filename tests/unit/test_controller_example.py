"""examples/controller.py on the memory backend (``ipvs_memory``): ownership
through ``scope`` (another owner's service survives full and incremental
applies), incremental apply of a file change, the fallback to a full resync
after a `BatchError`, a restart that finds its owned set in the file, bad
files, TOML, and the polling loop. Its run in the lab, with traffic:
tests/lab/test_controller_lab.py."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

import ipvs
from ipvs import Destination, Service

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "controller.py"

WEB = Service(address="10.0.0.1", port=80, scheduler="wrr")
API = Service(address="10.0.0.2", port=443, scheduler="rr")
FOREIGN = Service(address="10.9.0.1", port=80, scheduler="rr")     # another owner's
R1, R2 = "192.168.1.1", "192.168.1.2"


@pytest.fixture(scope="module")
def ctl_mod() -> Any:
    if not EXAMPLE.exists():
        pytest.skip("examples/ is not here (not a source tree)")
    spec = importlib.util.spec_from_file_location("controller_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def svc_entry(svc: Service, dests: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"address": str(svc.address), "port": svc.port, "scheduler": svc.scheduler,
            "destinations": dests}


def dest(addr: str, weight: int = 1, forward: str = "masq") -> Dict[str, Any]:
    return {"address": addr, "port": 8080, "weight": weight, "forward": forward}


def write(path: Path, services: List[Dict[str, Any]], owns: Any = ("10.0.0.0/24",)) -> None:
    path.write_text(json.dumps({"owns": list(owns), "services": services}))
    # a new modification time even within the clock's granularity
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def table(lb: ipvs.IPVS) -> Dict[Service, Dict[str, int]]:
    return {s: {str(d.address): d.weight for d in lb.destinations(s)} for s in lb.services()}


@pytest.fixture
def foreign(ipvs_memory: ipvs.IPVS) -> ipvs.IPVS:
    ipvs_memory.add_service(FOREIGN)
    ipvs_memory.add_destination(FOREIGN, Destination("192.168.9.1", 80))
    return ipvs_memory


@pytest.fixture
def web_file(tmp_path: Path, caplog: Any) -> Path:
    """A desired file of WEB on R1 and R2; the controller's log captured."""
    path = tmp_path / "desired.json"
    write(path, [svc_entry(WEB, [dest(R1), dest(R2)])])
    caplog.set_level(logging.INFO, logger="ipvs-controller")
    return path


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def started(ctl_mod: Any, lb: ipvs.AsyncIPVS, path: Path) -> Any:
    """A controller of ``path`` after its first (full) apply."""
    ctl = ctl_mod.Controller(lb, str(path))
    await ctl.resync()
    return ctl


def test_full_then_incremental_keeps_the_foreign_service(ctl_mod, foreign, web_file,
                                                         caplog, monkeypatch):
    path = web_file

    async def main() -> None:
        async with ipvs.AsyncIPVS() as lb:
            ctl = await started(ctl_mod, lb, path)
            assert table(foreign) == {FOREIGN: {"192.168.9.1": 1}, WEB: {R1: 1, R2: 1}}
            assert not await ctl.update()                     # nothing changed
            write(path, [svc_entry(WEB, [dest(R1, 3), dest(R2)]),
                         svc_entry(API, [dest(R1)])])
            # an incremental apply: the table is not read
            memory = lb._sync._live()
            monkeypatch.setattr(memory, "listing", lambda: pytest.fail("the table was read"))
            assert await ctl.update()
            monkeypatch.undo()
    run(main())
    assert table(foreign) == {FOREIGN: {"192.168.9.1": 1}, WEB: {R1: 3, R2: 1}, API: {R1: 1}}
    assert any("update_destination destination 192.168.1.1:8080 in service TCP 10.0.0.1:80: "
               "weight 1 -> 3" in r.getMessage() for r in caplog.records)


def test_a_removed_service_goes_the_foreign_one_stays(ctl_mod, foreign, tmp_path):
    path = tmp_path / "desired.json"
    write(path, [svc_entry(WEB, [dest(R1)]), svc_entry(API, [dest(R2)])])

    async def main() -> None:
        async with ipvs.AsyncIPVS() as lb:
            ctl = await started(ctl_mod, lb, path)
            write(path, [svc_entry(API, [dest(R2)])])
            await ctl.update()
            write(path, [])
            await ctl.update()
            await ctl.resync()                                # and a full apply agrees
    run(main())
    assert table(foreign) == {FOREIGN: {"192.168.9.1": 1}}


def test_a_restart_finds_its_owned_set_in_the_file(ctl_mod, foreign, tmp_path):
    """A service removed from the file while the controller was down is
    deleted by the next controller's first (full) apply: it is in ``owns``."""
    path = tmp_path / "desired.json"
    write(path, [svc_entry(WEB, [dest(R1)]), svc_entry(API, [dest(R2)])])

    async def start() -> None:
        async with ipvs.AsyncIPVS() as lb:
            await started(ctl_mod, lb, path)
    run(start())
    write(path, [svc_entry(WEB, [dest(R1)])])                 # edited while it was down
    run(start())                                              # the next controller
    assert table(foreign) == {FOREIGN: {"192.168.9.1": 1}, WEB: {R1: 1}}


def test_a_failed_batch_falls_back_to_a_full_resync(ctl_mod, foreign, web_file, caplog):
    path = web_file

    async def main() -> None:
        async with ipvs.AsyncIPVS() as lb:
            ctl = await started(ctl_mod, lb, path)
            # behind its back: R2 goes; the file then changes R2's weight
            await lb.delete_destination(WEB, Destination(R2, 8080))
            write(path, [svc_entry(WEB, [dest(R1), dest(R2, 5)])])
            assert await ctl.update()
    run(main())
    assert table(foreign)[WEB] == {R1: 1, R2: 5}
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("failed: ") and "update_destination" in m for m in messages)
    assert any("full resync" in m for m in messages)


@pytest.mark.parametrize("content, words", [
    ("{not json", "Expecting"),
    (json.dumps({"owns": ["10.0.0.0/24"], "services": [
        {"address": "10.1.0.1", "port": 80, "destinations": []}]}), "outside"),
    (json.dumps({"owns": ["10.0.0.0/24"], "services": [
        {"address": "10.0.0.1", "port": 80, "bogus": 1}]}), "bogus"),
    (json.dumps({"owns": ["10.0.0.0/24"], "services": [
        {"address": "10.0.0.1", "port": 80}, {"address": "10.0.0.1", "port": 80,
                                              "scheduler": "rr"}]}), "twice"),
])
def test_a_bad_file_leaves_the_table_alone(ctl_mod, foreign, tmp_path, content, words):
    path = tmp_path / "desired.json"
    write(path, [svc_entry(WEB, [dest(R1)])])

    async def main() -> None:
        async with ipvs.AsyncIPVS() as lb:
            ctl = await started(ctl_mod, lb, path)
            path.write_text(content)
            with pytest.raises(ctl_mod.FileError, match=words):
                await ctl.update()
    run(main())
    assert table(foreign) == {FOREIGN: {"192.168.9.1": 1}, WEB: {R1: 1}}


def test_toml_file(ctl_mod, foreign, tmp_path):
    path = tmp_path / "desired.toml"
    path.write_text('owns = ["10.0.0.0/24"]\n\n[[services]]\naddress = "10.0.0.1"\n'
                    'port = 80\nscheduler = "wrr"\ndestinations = [\n'
                    '  { address = "192.168.1.1", port = 8080, weight = 2, forward = "masq" },\n]\n')

    async def main() -> None:
        async with ipvs.AsyncIPVS() as lb:
            await started(ctl_mod, lb, path)
    run(main())
    assert table(foreign)[WEB] == {R1: 2}
    (d,) = foreign.destinations(WEB)
    assert d.forward == ipvs.Forward.MASQ


def test_the_loop_polls_and_stops(ctl_mod, foreign, tmp_path):
    path = tmp_path / "desired.json"
    write(path, [svc_entry(WEB, [dest(R1)])])

    async def wait(cond: Any) -> None:
        for _ in range(500):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ctl_mod.run(str(path), interval=0.01, resync=3600,
                                               stop=stop))
        await wait(lambda: WEB in table(foreign))
        write(path, [svc_entry(WEB, [dest(R1), dest(R2, 2)])])
        await wait(lambda: table(foreign)[WEB] == {R1: 1, R2: 2})
        stop.set()
        await asyncio.wait_for(task, 5)
    run(main())
    assert table(foreign) == {FOREIGN: {"192.168.9.1": 1}, WEB: {R1: 1, R2: 2}}
