#!/usr/bin/env python3
"""UDP streams for measuring a netlab link: loss, duplication, reordering, delay.

    udpprobe.py recv --bind ADDR --port P --out FILE [--ready FILE] [--deadline S]
    udpprobe.py send --to ADDR --port P --stream TAG:SIZE:COUNT:RATE [...] [--out FILE]

Every datagram starts with a header: magic "NLAB", tag (1 byte, one per
stream), sequence number (4 bytes) and send time (8 bytes, CLOCK_REALTIME in
ns, read just before sendto). Network namespaces share the clock, so the
receiver measures the one-way delay directly, up to the kernel's receive
timestamp of the datagram (SO_TIMESTAMPNS): how late the receiving process
gets to run on a busy machine does not count. The rest is padding up to
SIZE bytes of UDP payload.

The sender first sends warm-up datagrams (tag 0) until one comes back from
the receiver (which echoes tag 0), so that ARP/neighbour discovery has
resolved before a stream starts; otherwise the first datagrams of a lossy
link wait in, and overflow, the neighbour queue. Streams are then sent one
after the other, each paced to RATE datagrams per second (0: as fast as
possible), and finally end markers (tag 255, 30 times, 10 ms apart). The
receiver stops at the first end marker or after --deadline seconds, and
writes a JSON object per tag: received (all copies), unique, duplicates,
out_of_order (unique datagrams with a smaller sequence number than one
already received), delay_ms (min, mean, p5, p10, p50, p90, p95, max) and,
with --keep-delays, every one-way delay in order of arrival. The sender
writes {tag: {"size", "sent", "send_errors", "seconds"}}.
"""
import argparse
import json
import socket
import struct
import sys
import time

HDR = struct.Struct("!4sBIQ")
MAGIC = b"NLAB"
TAG_WARMUP = 0
TAG_END = 255
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS


def now_ns():
    return time.time_ns()  # CLOCK_REALTIME, the clock of SO_TIMESTAMPNS


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def write_json(path, obj):
    text = json.dumps(obj, indent=1, sort_keys=True)
    if path == "-":
        print(text)
    else:
        with open(path + ".tmp", "w") as f:
            f.write(text + "\n")
        import os

        os.replace(path + ".tmp", path)


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def cmd_recv(a):
    s = socket.socket(family(a.bind), socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((a.bind, a.port))
    s.settimeout(0.2)
    cmsg_space = socket.CMSG_SPACE(16)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    tags = {}
    end = time.monotonic() + a.deadline
    while time.monotonic() < end:
        try:
            data, anc, _, peer = s.recvmsg(65536, cmsg_space)
        except socket.timeout:
            continue
        t = None
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack_from("qq", value)
                t = sec * 1_000_000_000 + nsec
        if t is None:
            t = now_ns()
        if len(data) < HDR.size:
            continue
        magic, tag, seq, sent = HDR.unpack_from(data)
        if magic != MAGIC:
            continue
        if tag == TAG_WARMUP:
            s.sendto(data, peer)
            continue
        if tag == TAG_END:
            break
        st = tags.setdefault(tag, {"size": len(data), "received": 0, "seen": set(), "dup": 0,
                                   "ooo": 0, "max": -1, "delays": []})
        st["received"] += 1
        if seq in st["seen"]:
            st["dup"] += 1
            continue
        st["seen"].add(seq)
        if seq < st["max"]:
            st["ooo"] += 1
        else:
            st["max"] = seq
        st["delays"].append((t - sent) / 1e6)
    out = {}
    for tag, st in sorted(tags.items()):
        d = sorted(st["delays"])
        out[str(tag)] = {
            "size": st["size"],
            "received": st["received"],
            "unique": len(st["seen"]),
            "duplicates": st["dup"],
            "out_of_order": st["ooo"],
            "delay_ms": {
                "min": d[0] if d else None,
                "mean": sum(d) / len(d) if d else None,
                "p5": percentile(d, 0.05),
                "p10": percentile(d, 0.10),
                "p50": percentile(d, 0.50),
                "p90": percentile(d, 0.90),
                "p95": percentile(d, 0.95),
                "max": d[-1] if d else None,
            },
            "delays_ms": [round(x, 3) for x in st["delays"]] if a.keep_delays else None,
        }
    write_json(a.out, out)
    return 0


def parse_stream(text):
    try:
        tag, size, count, rate = text.split(":")
        st = (int(tag), int(size), int(count), float(rate))
    except ValueError:
        raise argparse.ArgumentTypeError(f"stream must be TAG:SIZE:COUNT:RATE, not {text!r}")
    if not 1 <= st[0] <= 254 or st[1] < HDR.size or st[1] > 65507 or st[2] < 0 or st[3] < 0:
        raise argparse.ArgumentTypeError(f"bad stream {text!r} (tag 1..254, size {HDR.size}..65507)")
    return st


def warmup(s, dest, seconds):
    s.settimeout(0.05)
    end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < end:
        s.sendto(HDR.pack(MAGIC, TAG_WARMUP, seq, now_ns()), dest)
        seq += 1
        try:
            data, _ = s.recvfrom(65536)
            if data[:4] == MAGIC and data[4] == TAG_WARMUP:
                s.settimeout(None)
                return True
        except socket.timeout:
            pass
    s.settimeout(None)
    return False


def send_stream(s, dest, tag, size, count, rate):
    pad = bytes(size - HDR.size)
    errors = 0
    t0 = time.monotonic()
    k = 0
    while k < count:
        if rate > 0:
            # Send everything that is due, then sleep until the next one:
            # the pace holds even when one sleep overshoots.
            due = int((time.monotonic() - t0) * rate) + 1
            due = min(due, count)
        else:
            due = count
        while k < due:
            try:
                s.sendto(HDR.pack(MAGIC, tag, k, now_ns()) + pad, dest)
            except OSError:
                errors += 1
            k += 1
        if k < count and rate > 0:
            wait = t0 + k / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
    return errors, time.monotonic() - t0


def cmd_send(a):
    s = socket.socket(family(a.to), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = (a.to, a.port)
    if not warmup(s, dest, a.warmup):
        print(f"udpprobe: no answer from {a.to}:{a.port} within {a.warmup} s", file=sys.stderr)
        return 1
    out = {}
    for tag, size, count, rate in a.stream:
        errors, secs = send_stream(s, dest, tag, size, count, rate)
        out[str(tag)] = {"size": size, "sent": count, "send_errors": errors, "seconds": round(secs, 3)}
        time.sleep(a.gap)
    for k in range(30):
        s.sendto(HDR.pack(MAGIC, TAG_END, k, now_ns()), dest)
        time.sleep(0.01)
    if a.out:
        write_json(a.out, out)
    return 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--out", required=True, help="JSON result file ('-': stdout)")
    r.add_argument("--ready", help="file created once the socket is bound")
    r.add_argument("--deadline", type=float, default=30.0)
    r.add_argument("--keep-delays", action="store_true", help="list every one-way delay in the result")
    w = sub.add_parser("send")
    w.add_argument("--to", required=True)
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--stream", type=parse_stream, action="append", required=True,
                   help="TAG:SIZE:COUNT:RATE (UDP payload bytes, datagrams, datagrams/s)")
    w.add_argument("--out", help="JSON file for what was sent")
    w.add_argument("--warmup", type=float, default=5.0, help="seconds to wait for the first echo")
    w.add_argument("--gap", type=float, default=0.3, help="pause after each stream (s)")
    a = p.parse_args(argv)
    return cmd_recv(a) if a.cmd == "recv" else cmd_send(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
