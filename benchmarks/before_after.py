"""Two source trees of ipvs, measured in one run of one kernel: the library
benchmark (bench.py) and the director at scale (bench_director_scale.py),
each tree in turn, and the medians side by side with after/before ratios.

    git worktree add /var/tmp/before <commit>    # and build its extension
    python -m ipvs.sandbox --mem 3072M --timeout 3000 -- PYTHON \\
        benchmarks/before_after.py --before /var/tmp/before --after . [--passes 2]

Each pass runs every tree once, the order reversed from one pass to the
next (before, after; after, before; ...), so a machine that warms up or
slows down over the run does not favour one tree.  A tree is imported from
its own directory (each benchmark runs with that tree as its working
directory and first on sys.path).  Medians over all passes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))

#: bench.py rows compared, with the row each is divided by in its own run
#: (the C floor, or ipvsadm where it runs)
LIB_ROWS = [("ipvs-apply-empty", "floor-batch"), ("ipvs-apply-noop", "floor-dump"),
            ("ipvs-table", "floor-dump"), ("ipvs-apply-incr", None),
            ("ipvs-apply-empty", "ipvsadm-create"), ("ipvs-table", "ipvsadm-list")]
DIRECTOR_LINES = {
    "director cold start": re.compile(r"^cold start: .* kernel ([\d.]+) s after"),
    "director no-change reload": re.compile(r"^no-change reload: .* done ([\d.]+) s after"),
    "director one-server reload": re.compile(r"^one-server reload: .* read back ([\d.]+) s"),
}


def run_lib(tree: str, scales: str, repeat: str, out: str) -> List[dict]:
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "bench.py"), "--scales", scales,
           "--repeat", repeat, "--skip", "pyroute2", "--json", out]
    subprocess.run(cmd, cwd=tree, check=True, stdout=sys.stderr,
                   env=dict(os.environ, PYTHONPATH=tree))
    with open(out) as f:
        return json.load(f)  # type: ignore[no-any-return]


def run_director(tree: str, services: int, servers: int) -> Dict[str, float]:
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "bench_director_scale.py"),
           "--services", str(services), "--servers", str(servers)]
    p = subprocess.run(cmd, cwd=tree, stdout=subprocess.PIPE, text=True,
                       env=dict(os.environ, PYTHONPATH=tree))
    sys.stderr.write(p.stdout)
    out = {}
    for line in p.stdout.splitlines():
        for name, rx in DIRECTOR_LINES.items():
            m = rx.match(line)
            if m:
                out[name] = float(m.group(1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the tree before the change")
    ap.add_argument("--after", default=os.path.dirname(HERE), help="the tree after it")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--scales", default="1000x10,10000x10")
    ap.add_argument("--repeat", default="5,3")
    ap.add_argument("--services", type=int, default=2300)
    ap.add_argument("--servers", type=int, default=16)
    ap.add_argument("--skip-director", action="store_true")
    ap.add_argument("--skip-library", action="store_true")
    args = ap.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    # {(scale, row): {tree: [median of each pass]}}
    lib: Dict[tuple, Dict[str, List[float]]] = {}
    ratio: Dict[tuple, Dict[str, List[float]]] = {}
    director: Dict[str, Dict[str, List[float]]] = {}
    tmp = tempfile.mkdtemp(prefix="before-after-", dir="/var/tmp")
    for n in range(args.passes):
        order = ["before", "after"] if n % 2 == 0 else ["after", "before"]
        for name in order:
            tree = trees[name]
            print("pass %d: %s (%s)" % (n + 1, name, tree), file=sys.stderr, flush=True)
            for res in [] if args.skip_library else run_lib(
                    tree, args.scales, args.repeat, os.path.join(tmp, "%s-%d.json" % (name, n))):
                scale = "%dx%d" % (res["services"], res["dests"])
                med = {k: statistics.median(v) for k, v in res["times"].items() if v}
                for row, base in LIB_ROWS:
                    if row not in med:
                        continue
                    lib.setdefault((scale, row), {}).setdefault(name, []).append(med[row])
                    if base is not None and base in med:
                        ratio.setdefault((scale, row, base), {}).setdefault(name, []).append(
                            med[row] / med[base])
            if not args.skip_director:
                for k, v in run_director(tree, args.services, args.servers).items():
                    director.setdefault(k, {}).setdefault(name, []).append(v)

    def line(label: str, got: Dict[str, List[float]], fmt: str = "%.4f") -> str:
        b = statistics.median(got["before"]) if got.get("before") else None
        a = statistics.median(got["after"]) if got.get("after") else None
        r = "%.2f" % (a / b) if a is not None and b else "-"
        return "%-52s %10s %10s %12s" % (label, fmt % b if b is not None else "-",
                                         fmt % a if a is not None else "-", r)

    print("before: %s\nafter:  %s\npasses: %d, kernel %s" % (
        trees["before"], trees["after"], args.passes, os.uname().release))
    print("%-52s %10s %10s %12s" % ("median seconds", "before", "after", "after/before"))
    for (scale, row), got in sorted(lib.items()):
        print(line("%s %s" % (scale, row), got))
    print("%-52s %10s %10s %12s" % ("ratio to the peer of the same run", "before", "after",
                                    "after/before"))
    for (scale, row, base), got in sorted(ratio.items()):
        print(line("%s %s / %s" % (scale, row, base), got, "%.3f"))
    if director:
        print("%-52s %10s %10s %12s" % ("director, %d x %d real servers (s)"
                                        % (args.services, args.servers), "before", "after",
                                        "after/before"))
        for name, got in director.items():
            print(line(name, got, "%.3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
