"""Sphinx extension: plots of the benchmark results (docs/bench/*.json, as
written by ``benchmarks/bench.py --json``) drawn with matplotlib into
docs/_generated/ before the pages are read, so the benchmark page shows the
figures of the committed results and never a stale picture.

One PNG per results file, scale and group: ``_generated/STEM-SxD-GROUP.png``
(STEM the JSON file's name without ``.json``, GROUP ``create`` or ``list``);
bars coloured by tool (ipvsadm, pyroute2, ipvs, the C floor)."""
from __future__ import annotations

import json
import os

def _bench_rows() -> list[tuple]:
    """benchmarks/bench.py's ROWS: (name, kind, label, target) in table order."""
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "benchmarks", "bench.py")
    spec = importlib.util.spec_from_file_location("_ipvs_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.ROWS)


def _medians(result: dict) -> dict[str, float]:
    import statistics
    return {k: statistics.median(v) for k, v in result.get("times", {}).items() if v}


def _colour(label: str) -> str:
    """One colour per tool, so the peers stand apart from the library."""
    if label.startswith("ipvsadm"):
        return "#8c8c8c"
    if label.startswith("pyroute2"):
        return "#d98c3a"
    if label.startswith("floor"):
        return "#5a9e6f"
    return "#1f5f99"


def draw(src_dir: str, out_dir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench_dir = os.path.join(src_dir, "bench")
    rows_def = _bench_rows()
    os.makedirs(out_dir, exist_ok=True)
    made = []
    for name in sorted(os.listdir(bench_dir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(bench_dir, name)) as f:
            data = json.load(f)
        for result in data if isinstance(data, list) else [data]:
            med = _medians(result)
            scale = f"{result['services']}x{result['dests']}"
            stem = name[:-len(".json")]
            for group, title in (("create", "writing"), ("list", "reading")):
                present = [(label, med[n]) for n, kind, label, _t in rows_def
                           if kind == group and n in med]
                if not present:
                    continue
                fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(present) + 1.2))
                labels = [p[0] for p in present][::-1]
                values = [p[1] for p in present][::-1]
                bars = ax.barh(labels, values, color=[_colour(lab) for lab in labels])
                ax.set_xscale("log")
                ax.set_xlabel("seconds (median, log scale)")
                ax.set_title(f"{title} {result['services']} services x "
                             f"{result['dests']} real servers")
                ax.set_xlim(min(values) / 2, max(values) * 6)  # room for the labels
                for bar, v in zip(bars, values):
                    ax.text(v, bar.get_y() + bar.get_height() / 2, f" {v:.3g} s",
                            va="center", fontsize=8)
                fig.tight_layout()
                path = os.path.join(out_dir, f"{stem}-{scale}-{group}.png")
                fig.savefig(path, dpi=110)
                plt.close(fig)
                made.append(path)
    return made


def _on_init(app) -> None:
    draw(app.srcdir, os.path.join(app.srcdir, "_generated"))


def setup(app):
    app.connect("builder-inited", _on_init)
    return {"parallel_read_safe": True, "version": "1"}
