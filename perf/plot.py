#!/usr/bin/python3
"""Plots rvs-perf director's CSV: forwarded Mpps against concurrent flows, per mode, 64-byte and IMIX,
with dpdk-testpmd through the same ports as the reference line. Usage: plot.py director.csv out.png"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    rows = list(csv.DictReader(open(src, newline="")))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colours = {"NAT": "tab:blue", "DR": "tab:green", "TUN": "tab:orange"}
    for mode, colour in colours.items():
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: int(r["flows"]))
        if not mine:
            continue
        flows = [int(r["flows"]) for r in mine]
        ax.plot(flows, [float(r["mpps_64"]) for r in mine], "o-", color=colour, label=f"{mode} 64 B")
        ax.plot(flows, [float(r["mpps_imix"]) for r in mine], "s--", color=colour, alpha=0.6,
                label=f"{mode} IMIX")
    for r in rows:
        if r["mode"] == "testpmd":
            ax.axhline(float(r["mpps_64"]), color="grey", linestyle=":",
                       label=f"testpmd io 64 B ({float(r['mpps_64']):.1f} Mpps)")
    ax.set_xscale("log")
    ax.set_xlabel("concurrent flows")
    ax.set_ylabel("forwarded Mpps (one worker core)")
    ax.set_title("rvs director through net_memif ports")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
