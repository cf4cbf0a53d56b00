#!/usr/bin/env python3
"""How often pieces of one stripe share a node, measured on a deployed scene.

usage: scripts/stripe-placement.py SCENE_DIR K M FILE [FILE...]
Each FILE must have been uploaded with --redundancy=K+M; its piece list
comes from `bin/dhthash -v --redundancy=K+M FILE` (DHTHASH overrides the
path), its holders from the scene's stores (SCENE_DIR/<port>/fragments.idx).
Stripes follow docs/PROTOCOL.md "Coded files" (balanced, m_i = ceil(k_i m / k)).
Prints the share of stripes two of whose pieces (any copy) are on one node
and the most pieces of a stripe one node holds, on average."""
import os, subprocess, sys
from collections import Counter

if len(sys.argv) < 5:
    sys.exit(__doc__.strip())
scene, k, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ports = [p for p in os.listdir(scene) if p.isdigit()]
held = {}
ENTRY = 40  # crates/dht-std/src/store.rs: "DHFR", count, 3 zeros, hash
for p in ports:
    index = os.path.join(scene, p, "fragments.idx")
    if os.path.isfile(index):
        with open(index, "rb") as f:
            while len(entry := f.read(ENTRY)) == ENTRY:
                if entry[:4] == b"DHFR":
                    held.setdefault(entry[8:40].hex(), []).append(p)
stripes = shared = worst_sum = pieces_total = lone = 0
for f in sys.argv[4:]:
    run = subprocess.run([os.environ.get("DHTHASH", "bin/dhthash"),
                          "-v", f"--redundancy={k}+{m}", f], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"dhthash failed on {f}: {run.stderr.strip()}")
    out = run.stderr
    data, parity = [], []
    for line in out.splitlines():
        w = line.split()
        if len(w) == 4 and w[2] == "shard":
            if w[0].isdigit():
                data.append(w[1])
            elif w[0] == "par":
                parity.append(w[1])
    d = len(data)
    s_count = max(1, -(-d // k))
    di = pi = 0
    for i in range(s_count):
        ki = d // s_count + (1 if i < d % s_count else 0)
        mi = -(-ki * m // k)
        pieces = data[di:di + ki] + parity[pi:pi + mi]
        di += ki
        pi += mi
        c = Counter()
        for h in pieces:
            for p in held.get(h, []):
                c[p] += 1
        worst = max(c.values()) if c else 0
        stripes += 1
        shared += worst > 1
        worst_sum += worst
        pieces_total += len(pieces)
        lone += sum(1 for h in pieces if len(held.get(h, [])) == 0)
print(f"{len(ports)} nodes: {stripes} stripes, {pieces_total} pieces; stripes with two pieces on one node: "
      f"{100.0 * shared / stripes:.0f} %; most pieces of a stripe on one node, mean {worst_sum / stripes:.1f}; "
      f"pieces held nowhere: {lone}")
