"""Bar charts of bench/results/peers.json: throughput and latency per workload.
Runs in bench/.peers/plot (matplotlib), not in .venv: excluded from mypy/ruff.

    bench/.peers/plot/bin/python bench/peers/services/charts.py bench/results
"""

import json
import statistics
import textwrap
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = Path(sys.argv[1])
data = json.loads((out / "peers.json").read_text())
metrics = data["metrics"]
systems = [s for s, v in data["systems"].items() if v["runs"]]
colors = {
    "va-fsync": "#1f77b4", "va-process": "#6baed6", "va-http": "#9ecae1",
    "dbos-sqlite": "#d62728", "dbos-postgres": "#ff9896", "restate": "#2ca02c",
    "raw-lmdb-1": "#7f7f7f", "raw-lmdb-64": "#bdbdbd", "raw-pingpong": "#dddddd",
}


def chart(names, title, ylabel, path):
    names = [n for n in names if any(n in r["metrics"] for s in systems for r in data["systems"][s]["runs"])]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(names) + 3), 5))
    width = 0.8 / max(1, len(systems))
    for j, s in enumerate(systems):
        runs = data["systems"][s]["runs"]
        xs, meds, lo, hi = [], [], [], []
        for i, n in enumerate(names):
            vals = [r["metrics"][n] for r in runs if n in r["metrics"]]
            if not vals:
                continue
            m = statistics.median(vals)
            xs.append(i + (j - (len(systems) - 1) / 2) * width)
            meds.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        ax.bar(xs, meds, width, label=s, color=colors.get(s), yerr=[lo, hi], capsize=2)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([metrics[n][0] + "\n" + textwrap.fill(metrics[n][1], 22) for n in names], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel + " (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / path, dpi=110)
    print(f"saved {out / path}")


m = data["machine"]
sub = f"{m['nproc']} CPUs ({m['cpu']}), {m['date']}, median of {data['runs']} run(s), bars = min-max"
chart([n for n, v in metrics.items() if v[3]], f"Throughput (higher is better)\n{sub}", "operations/s", "peers_throughput.png")
chart([n for n, v in metrics.items() if not v[3]], f"Latency and W6 recovery time (lower is better)\n{sub}", "ms (W6: s)", "peers_latency.png")
