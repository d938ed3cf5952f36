#!/usr/bin/env python3
"""One line of Nsight Compute evidence per kernel launch, from `ncu --set full --page raw --csv` output.

    python3 scripts/lib/ncu_summary.py report.csv [label]

Prints, per profiled kernel: grid, duration, DRAM bandwidth and active cycles, SM throughput, issue-slot
use, tensor-pipe cycles, shared-memory (LSU) wavefront use, L2 hit rate, the busiest instruction pipes, and the warp-stall reasons with the most
warps per issued instruction. Metrics are picked by name pattern, so a metric this ncu version lacks is
left out rather than failing.
"""
import csv
import re
import sys


def number(text):
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return None


def main():
    path = sys.argv[1]
    label = sys.argv[2] if len(sys.argv) > 2 else ""
    with open(path, errors="replace") as f:
        lines = [line for line in f if line.startswith('"')]  # drop ncu's ==PROF== and program output
    rows = list(csv.reader(lines))
    if len(rows) < 3:
        print(f"{label}: no kernel rows in {path}")
        return
    header, data = rows[0], rows[2:]  # rows[1]: units
    col = {name: i for i, name in enumerate(header)}

    def get(row, name):
        i = col.get(name)
        return number(row[i]) if i is not None and i < len(row) else None

    def top(row, pattern, n):
        found = []
        for name, i in col.items():
            m = re.fullmatch(pattern, name)
            value = number(row[i]) if m and i < len(row) else None
            if value is not None:
                found.append((value, m.group(1)))
        return sorted(found, reverse=True)[:n]

    for row in data:
        kernel = row[col["Kernel Name"]] if "Kernel Name" in col else "?"
        kernel = re.sub(r"\(.*", "", kernel).replace("smla::detail::decode::", "")
        dram_bytes_per_s = get(row, "dram__bytes.sum.per_second")
        fields = [
            ("grid", get(row, "launch__grid_size"), "{:.0f}"),
            ("cluster", get(row, "launch__cluster_size") or get(row, "launch__cluster_dim_x"), "{:.0f}"),
            ("us", (get(row, "gpu__time_duration.sum") or 0) / 1000.0, "{:.2f}"),
            ("dram_GB/s", dram_bytes_per_s / 1e9 if dram_bytes_per_s else None, "{:.0f}"),
            ("dram_active%", get(row, "dram__cycles_active.avg.pct_of_peak_sustained_elapsed"), "{:.1f}"),
            ("sm%", get(row, "sm__throughput.avg.pct_of_peak_sustained_elapsed"), "{:.1f}"),
            ("issue%", get(row, "smsp__issue_active.avg.pct_of_peak_sustained_active"), "{:.1f}"),
            ("tensor%", get(row, "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"), "{:.1f}"),
            ("smem_lsu%", get(row, "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed"),
             "{:.1f}"),
            ("L2hit%", get(row, "lts__t_sector_hit_rate.pct"), "{:.1f}"),
            ("warps%", get(row, "sm__warps_active.avg.pct_of_peak_sustained_active"), "{:.1f}"),
        ]
        text = " ".join(f"{k}={fmt.format(v)}" for k, v, fmt in fields if v is not None)
        pipes = top(row, r"sm__inst_executed_pipe_(\w+)\.avg\.pct_of_peak_sustained_active", 6)
        stalls = top(row, r"smsp__average_warps_issue_stalled_(\w+)_per_issue_active\.ratio", 6)
        print(f"{label} {kernel}: {text}")
        print("    instruction pipes % of peak: " + ", ".join(f"{name} {v:.1f}" for v, name in pipes))
        print("    stalls (warps per issue): " + ", ".join(f"{name} {v:.2f}" for v, name in stalls))


if __name__ == "__main__":
    main()
