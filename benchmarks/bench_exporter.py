"""One scrape of ``ipvs-exporter`` against one scrape of node_exporter's ipvs
collector, on the same IPVS table of S services x D real servers.

Run as root in a kernel with IPVS (normally the User-Mode-Linux sandbox):

    python -m ipvs.sandbox -- $(pwd)/.venv/bin/python benchmarks/bench_exporter.py \
        --services 1000 --dests 10 --repeat 7

Both exporters run as processes of their own inside one fresh network
namespace (``lo`` up, the table filled once there, removed afterwards) and
listen on 127.0.0.1 of that namespace; this script scrapes each over HTTP
from the same namespace, ``--repeat`` times after one warm-up scrape, and
reports the median and minimum time of a whole scrape (request to last byte)
and the number of series in the answer.  (The exporters' CPU times are not
reported: under User-Mode Linux on a busy host they count the host's
preemption too and exceed the wall-clock times.)  All exporters run at once and are
scraped in turns, one scrape of each per round, so that on a shared host
they all see the same load:

- ``ipvs-exporter``: ``python -m ipvs.exporter --listen 127.0.0.1:P``
  (default flags: per-real-server series, no rates), and also with
  ``--rates`` and with ``--destination-labels none``;
- ``node_exporter``: Debian's ``prometheus-node-exporter
  --collector.disable-defaults --collector.ipvs`` (it reads /proc/net/ip_vs
  and /proc/net/ip_vs_stats). Its answer also holds its own go_*/process_*
  /promhttp_* series: both the total and the node_ipvs_* count are shown.

Then, in this process (``--no-inprocess`` skips it), the parts of one of our
scrapes: the ``table()`` listing, the fast renderer, and prometheus_client's
generic path on the same listing, for comparison.

Workload: service i TCP 10.0.0.0+i+1 port 80 (wlc); its real server j
172.16.0.0+i*D+j+1 port 8080, direct routing, weight 1; no traffic.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

import ipvs
from ipvs import netns

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@contextlib.contextmanager
def fresh_netns() -> Iterator[str]:
    name = "ipvs-bench-exp-%d-%s" % (os.getpid(), secrets.token_hex(3))
    netns.create(name)
    try:
        netns.link_up(name, "lo")
        yield name
    finally:
        netns.remove(name)


def fill(ns: str, services: int, dests: int) -> None:
    base_v = int(ipaddress.IPv4Address("10.0.0.0"))
    base_d = int(ipaddress.IPv4Address("172.16.0.0"))
    with ipvs.IPVS(netns=ns, timeout=120.0) as lb:
        with lb.batch() as b:
            for i in range(services):
                svc = ipvs.Service(address=ipaddress.IPv4Address(base_v + i + 1), port=80)
                b.add_service(svc)
                for j in range(dests):
                    b.add_destination(svc, ipvs.Destination(
                        ipaddress.IPv4Address(base_d + i * dests + j + 1), 8080))


def free_port(ns: str) -> int:
    with netns.enter(ns):
        s = socket.socket()
    with s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(ns: str, port: int, gzip: bool = False) -> Tuple[float, bytes]:
    """(seconds, body) of one GET /metrics from inside ns.  A lean HTTP/1.0
    client (one socket, recv_into a preallocated buffer until the server
    closes), so that the time is the exporter's, not a Python HTTP
    library's; the answer is decoded (chunked, gzip) after the clock stops."""
    request = ("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n%s\r\n"
               % (port, "Accept-Encoding: gzip\r\n" if gzip else "")).encode()
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    with netns.enter(ns):
        s = socket.socket()
    with s:
        s.settimeout(120)
        t0 = time.perf_counter()
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        n = 0
        while True:
            got = s.recv_into(view[n:], 1 << 20)
            if not got:
                break
            n += got
        t = time.perf_counter() - t0
    raw = bytes(buf[:n])
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise RuntimeError("scrape failed: %r" % status)
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        out, rest = [], body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out.append(rest[:size])
            rest = rest[size + 2:]
        body = b"".join(out)
    if b"content-encoding: gzip" in headers:
        import gzip as gz
        body = gz.decompress(body)
    return t, body


def count(body: bytes, prefix: str = "") -> int:
    return sum(1 for ln in body.decode().splitlines()
               if ln and not ln.startswith("#") and ln.startswith(prefix))


def wait_up(ns: str, port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited: %s" % (what, proc.stderr.read().decode()))  # type: ignore
        try:
            with netns.enter(ns):
                c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("%s did not listen on port %d" % (what, port))


def measure_all(ns: str, setups: List[Tuple[str, List[str], str]], repeat: int,
                gzip: bool) -> List[Dict[str, object]]:
    """Start every exporter, then scrape them in turns (one scrape of each
    per round, ``repeat`` rounds after a warm-up round), so that all see
    the same load on a shared host."""
    procs = []
    try:
        for name, argv, prefix in setups:
            port = free_port(ns)
            argv = [a.replace("{PORT}", str(port)) for a in argv]
            proc = subprocess.Popen(["ip", "netns", "exec", ns] + argv,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append((name, prefix, port, proc))
        for name, _prefix, port, proc in procs:
            wait_up(ns, port, proc, name)
            scrape(ns, port, gzip)                      # warm-up
        times: Dict[str, List[float]] = {name: [] for name, *_ in procs}
        bodies: Dict[str, bytes] = {}
        for _ in range(repeat):
            for name, _prefix, port, _proc in procs:
                t, bodies[name] = scrape(ns, port, gzip)
                times[name].append(t)
    finally:
        for *_, proc in procs:
            proc.terminate()
        for *_, proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    rows = []
    for name, prefix, _port, _proc in procs:
        body = bodies[name]
        own = count(body, prefix)
        med = statistics.median(times[name])
        rows.append({"name": name, "median_s": med, "min_s": min(times[name]),
                     "series": count(body), "ipvs_series": own,
                     "us_per_series": med / own * 1e6 if own else None, "bytes": len(body)})
    return rows


def inprocess(ns: str, repeat: int) -> Dict[str, float]:
    import ipvs.exporter as ex
    from prometheus_client.core import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    c = ex.IPVSCollector(ns)
    try:
        snaps_t, render_t = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            snaps = c.snapshots()
            t1 = time.perf_counter()
            c.render(snaps)
            t2 = time.perf_counter()
            snaps_t.append(t1 - t0)
            render_t.append(t2 - t1)

        class Fixed:
            def collect(self):  # the generic path on the same listing
                return c.collect(snaps)

        reg = CollectorRegistry()
        reg.register(Fixed())  # type: ignore[arg-type]
        t0 = time.perf_counter()
        generate_latest(reg)
        generic = time.perf_counter() - t0
    finally:
        c.close()
    return {"listing_s": statistics.median(snaps_t), "render_s": statistics.median(render_t),
            "generic_s": generic}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--dests", type=int, default=10)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--gzip", action="store_true", help="ask for gzip, as Prometheus does")
    p.add_argument("--no-inprocess", action="store_true")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    node = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    py = sys.executable
    with fresh_netns() as ns:
        t0 = time.perf_counter()
        fill(ns, a.services, a.dests)
        print("table of %d x %d filled in %.1f s" % (a.services, a.dests,
                                                     time.perf_counter() - t0), flush=True)
        exp = [py, "-m", "ipvs.exporter", "--listen", "127.0.0.1:{PORT}"]
        setups = [("ipvs-exporter", exp, "ipvs_"),
                  ("ipvs-exporter --rates", exp + ["--rates"], "ipvs_"),
                  ("ipvs-exporter --destination-labels none",
                   exp + ["--destination-labels", "none"], "ipvs_")]
        if node:
            setups.append(("node_exporter --collector.ipvs",
                           [node, "--collector.disable-defaults", "--collector.ipvs",
                            "--web.listen-address=127.0.0.1:{PORT}"], "node_ipvs_"))
        else:
            print("node_exporter: not installed (Debian package prometheus-node-exporter)")
        rows = measure_all(ns, setups, a.repeat, a.gzip)
        parts = None if a.no_inprocess else inprocess(ns, a.repeat)
    print("\n%d services x %d real servers, %d scrapes after a warm-up%s\n"
          % (a.services, a.dests, a.repeat, ", gzip" if a.gzip else ""))
    print("| exporter | median s | min s | series (all) | IPVS series "
          "| us per IPVS series (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| %s | %.3f | %.3f | %d | %d | %s |" % (
            r["name"], r["median_s"], r["min_s"], r["series"], r["ipvs_series"],
            "%.2f" % r["us_per_series"] if r["us_per_series"] else "-"))
    if parts:
        print("\nin-process, one scrape of ours: table() + info() %.3f s, fast renderer %.3f s; "
              "prometheus_client's generic path on the same listing %.3f s"
              % (parts["listing_s"], parts["render_s"], parts["generic_s"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "inprocess": parts, "services": a.services,
                       "dests": a.dests}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
