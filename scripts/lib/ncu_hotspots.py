#!/usr/bin/env python3
"""Where a kernel's warps stall, from an Nsight Compute report's source page.

    ncu --set full --import-source yes -k regex:sm90 -c 1 -o rep build-gpu/smla-bench ...
    ncu -i rep.ncu-rep --page source --csv --print-source sass > src.csv
    python3 scripts/lib/ncu_hotspots.py src.csv [N]

Prints the N SASS instructions (default 60) with the most warp-stall samples, then the share of samples
per 64-instruction bucket (phases of the kernel: prologue, consumer loop, epilogue, producer loop).
"""
import csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
# find header
h = next(i for i, r in enumerate(rows) if any("Sampling (All" in c for c in r))
header = rows[h]
ci = next(i for i, c in enumerate(header) if "Sampling (All" in c)
si = next(i for i, c in enumerate(header) if c.strip() == "Source")
ai = next((i for i, c in enumerate(header) if c.strip() == "Address"), 0)
body = []
for idx, r in enumerate(rows[h + 1:]):
    try:
        body.append((float(r[ci] or 0), idx, r[ai], r[si]))
    except (ValueError, IndexError):
        pass
total = sum(b[0] for b in body)
print("total samples", total, "instructions", len(body))
for s, idx, a, src in sorted(body, reverse=True)[: int(sys.argv[2]) if len(sys.argv) > 2 else 60]:
    print(f"{100*s/total:5.1f}% #{idx:5d} {a} {src[:110]}")
print("--- samples per 64-instruction bucket (index: share, first SASS of bucket)")
buckets = {}
for s, idx, a, src in body:
    buckets.setdefault(idx // 64, [0.0, None])
    buckets[idx // 64][0] += s
firsts = {}
for s, idx, a, src in sorted(body, key=lambda b: b[1]):
    firsts.setdefault(idx // 64, src[:70])
for k in sorted(buckets):
    if buckets[k][0] / total > 0.005:
        print(f"{k*64:6d}: {100*buckets[k][0]/total:5.1f}%  {firsts[k]}")
