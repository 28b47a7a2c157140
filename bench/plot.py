"""Plots for docs/benchmarks.md from bench/results/latest.json (run by bench/run.mjs)."""
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

root = pathlib.Path(__file__).resolve().parent.parent
r = json.loads((root / "bench" / "results" / "latest.json").read_text())
out = root / "docs" / "bench"
out.mkdir(parents=True, exist_ok=True)
labels = {"js-forward": "JS ceiling (no storage)", "js-queue": "JS + SQLite queue", "rust": "edge-chat legacy", "rust-v1": "edge-chat v1"}

fig, axes = plt.subplots(1, len(r["pair"]), figsize=(11, 4), sharey=True)
axes = axes if hasattr(axes, "__len__") else [axes]
for ax, (storage, targets) in zip(axes, r["pair"].items()):
    for name, t in targets.items():
        s = sorted(t["samples"])
        ax.plot(s, [i / len(s) for i in range(len(s))], label=labels.get(name, name))
    ax.set_xscale("log")
    ax.set_xlabel("send → receive latency (ms, log)")
    ax.set_title(f"one message at a time, storage on {storage}")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("fraction of messages")
axes[0].legend()
fig.tight_layout()
fig.savefig(out / "latency.png", dpi=110)

names = list(r["pair"]["disk"].keys())
nan = float("nan")
scen = [("pair (disk)", lambda n: r["pair"]["disk"][n]["msgPerSec"])]
if "tmpfs" in r["pair"]:
    scen.append(("pair (tmpfs)", lambda n: r["pair"]["tmpfs"][n]["msgPerSec"]))
scen += [
    ("fan-in 100→1", lambda n: r["crowd"][n]["fanIn"]["msgPerSec"] if n in r["crowd"] else nan),
    ("100 pairs", lambda n: r["crowd"][n]["manyPairs"]["msgPerSec"] if n in r["crowd"] else nan),
]
fig, ax = plt.subplots(figsize=(10, 4))
w = 0.8 / len(names)
for i, name in enumerate(names):
    ax.bar([k + i * w for k in range(len(scen))], [f(name) for _, f in scen], w, label=labels.get(name, name))
ax.set_xticks([k + w * (len(names) - 1) / 2 for k in range(len(scen))], [s for s, _ in scen])
ax.set_ylabel("messages / s")
ax.set_title("throughput per scenario (median of rounds)")
ax.legend()
ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
fig.savefig(out / "throughput.png", dpi=110)

m = r["memory"]
fig, ax1 = plt.subplots(figsize=(8, 4))
rounds = [x["round"] for x in m]
ax1.plot(rounds, [x["rssMB"] for x in m], "o-", label="workerd RSS (MB)")
ax1.set_xlabel(f"round ({r['n']} messages each)")
ax1.set_ylabel("RSS (MB)")
ax2 = ax1.twinx()
ax2.plot(rounds, [x["heapMB"] for x in m], "s--", color="tab:orange", label="V8 heap after GC (MB)")
ax2.plot(rounds, [x["wasmMB"] for x in m], "^:", color="tab:green", label="wasm memory (MB)")
ax2.set_ylabel("live memory (MB)")
fig.legend(loc="upper center", ncol=3, fontsize=8)
ax1.grid(alpha=0.3)
fig.tight_layout(rect=(0, 0, 1, 0.92))
fig.savefig(out / "memory.png", dpi=110)
print("plots written to docs/bench/")
