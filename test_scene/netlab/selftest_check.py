#!/usr/bin/env python3
"""Checks and prints the figures of selftest.sh.

    selftest_check.py STATE_DIR delay NAME      check one delay attempt (exit 0: ok)
    selftest_check.py STATE_DIR report DELAY_NAME DELAY_ATTEMPTS

Reads the NAME.rx.json / NAME.tx.json (udpprobe.py) and NAME.switch (the
switch's counters) that selftest.sh's measure() leaves in STATE_DIR.
"""
import json
import os
import sys

FAILS = []


def load(d, name):
    rx = json.load(open(os.path.join(d, name + ".rx.json")))
    tx = json.load(open(os.path.join(d, name + ".tx.json")))
    sw = dict(kv.split("=", 1) for kv in open(os.path.join(d, name + ".switch")).read().split()[1:])
    return rx, tx, sw


def got(rx, tag):
    return rx.get(str(tag), {"received": 0, "unique": 0, "duplicates": 0, "out_of_order": 0,
                             "delay_ms": {}, "delays_ms": []})


def check(label, value, lo, hi, fmt="{:.4f}", quiet=False):
    ok = lo <= value <= hi
    if not ok:
        FAILS.append(label)
    if not quiet:
        print(f"  {label:<52} {fmt.format(value):>9}   expected {fmt.format(lo)}..{fmt.format(hi)}"
              f"  {'ok' if ok else 'FAIL'}")
    return ok


def switch_line(sw, keys):
    return "  switch: " + " ".join(f"{k}={sw[k]}" for k in keys if k in sw)


def delay_checks(d, name, quiet):
    """Phase 2: no loss, delay 5 +/- 2 ms, 300 datagrams of 200 bytes (tag 4)."""
    rx, tx, sw = load(d, name)
    r = got(rx, 4)
    dl = r["delay_ms"]
    delays = r.get("delays_ms") or []
    check("delivered", r["unique"] / tx["4"]["sent"], 0.99, 1.0, quiet=quiet)
    # Scheduling noise on a busy machine only ever adds delay, so the low
    # end and the middle of the distribution are what the switch controls.
    check("one-way delay min (ms)", dl.get("min") or 0, 2.5, 4.0, "{:.2f}", quiet)
    check("one-way delay median (ms)", dl.get("p50") or 0, 4.5, 6.0, "{:.2f}", quiet)
    check("one-way delay 10th percentile (ms)", dl.get("p10") or 0, 2.9, 4.2, "{:.2f}", quiet)
    check("one-way delay 90th percentile (ms)", dl.get("p90") or 0, 5.8, 8.5, "{:.2f}", quiet)
    # Twice the jitter (uniform 1..9 ms) would put only 62 % here; none, all.
    inside = sum(1 for x in delays if 2.5 <= x <= 7.5) / max(1, len(delays))
    check("fraction of one-way delays in 2.5..7.5 ms", inside, 0.80, 1.0, quiet=quiet)
    return dl, sw


def report(d, delay_name, attempts):
    print("\nnetlab selftest results")
    rx, tx, sw = load(d, "loss")
    small = got(rx, 1)["unique"] / tx["1"]["sent"]
    big = got(rx, 2)["unique"] / tx["2"]["sent"]
    base = got(rx, 1)["delay_ms"]
    print("phase 1: 20 % loss per frame, no delay (2000 datagrams each, 1000/s)")
    check("delivered, 1000-byte datagrams (1 frame)", small, 0.80 - 0.07, 0.80 + 0.07)
    check("delivered, 8300-byte datagrams (6 fragments)", big, 0.8 ** 6 - 0.07, 0.8 ** 6 + 0.07)
    print(f"  {'  (0.8^6 = 0.2621)':<52}")
    frac = int(sw["dropped"]) / max(1, int(sw["copies"]))
    check("frames the switch dropped / frames it switched", frac, 0.17, 0.23)
    print(switch_line(sw, ("frames_in", "dropped", "forwarded", "kernel_drops", "late_mean_ms", "late_max_ms")))
    if int(sw["kernel_drops"]):
        print("  warning: the switch fell behind (kernel_drops > 0): extra loss")
    rx2, tx2, _ = load(d, "lossdefault")
    big_default = got(rx2, 3)["unique"] / tx2["3"]["sent"]
    print(f"  {'delivered, 8300 bytes, kernel default 4 MB reassembly':<52} {big_default:9.4f}"
          "   (information: reassembly memory fills)")

    print(f"phase 2: delay 5 +/- 2 ms, no loss (300 datagrams of 200 bytes, 100/s; attempt {attempts} of at most 3)")
    dl, sw = delay_checks(d, delay_name, quiet=False)
    if dl.get("min") is not None:
        print(f"  one-way delay ms: min {dl['min']:.2f} p10 {dl['p10']:.2f} p50 {dl['p50']:.2f} "
              f"mean {dl['mean']:.2f} p90 {dl['p90']:.2f} p95 {dl['p95']:.2f} max {dl['max']:.2f}")
    if base.get("mean") is not None:
        print(f"  without added delay (phase 1, 1000 bytes): mean {base['mean']:.2f} p95 {base['p95']:.2f} "
              f"max {base['max']:.2f}")
    print(switch_line(sw, ("late_mean_ms", "late_max_ms", "wake_bias_ms")))

    rx, tx, sw = load(d, "reorder")
    r = got(rx, 5)
    print("phase 3: delay 5 +/- 2 ms, 10 % reorder (+10 ms), 10 % duplicate "
          "(2000 datagrams of 1000 bytes, 1000/s)")
    check("delivered (unique)", r["unique"] / tx["5"]["sent"], 0.99, 1.0)
    check("extra copies / unique datagrams", r["duplicates"] / max(1, r["unique"]), 0.07, 0.13)
    check("arrived after a later one / unique datagrams", r["out_of_order"] / max(1, r["unique"]), 0.07, 0.13)
    print(switch_line(sw, ("frames_in", "reordered", "duplicated", "forwarded", "kernel_drops",
                           "late_mean_ms", "late_max_ms", "cpu_s")))
    if FAILS:
        print("FAILED: " + "; ".join(FAILS))
        return 1
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "delay":
        dl, sw = delay_checks(argv[0], argv[2], quiet=True)
        if FAILS:
            print(f"  delay attempt {argv[2]} off ({'; '.join(FAILS)}): p10 {dl.get('p10')}, "
                  f"p50 {dl.get('p50')}, p90 {dl.get('p90')}; switch late_mean_ms={sw.get('late_mean_ms')}"
                  " (busy machine?)")
        return 1 if FAILS else 0
    if len(argv) == 4 and argv[1] == "report":
        return report(argv[0], argv[2], int(argv[3]))
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
