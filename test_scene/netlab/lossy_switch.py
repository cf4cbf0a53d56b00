#!/usr/bin/env python3
"""A user-space Ethernet switch that loses, delays, reorders and duplicates frames.

    lossy_switch.py [options] IFNAME IFNAME [IFNAME...]

Each IFNAME is the root-namespace end of a veth pair whose other end is
eth0 in one network namespace (netlab.sh sets this up). The switch opens
one AF_PACKET socket per port, learns which source MAC sits behind which
port, and forwards every frame it reads to the port of its destination MAC
(or floods it to all other ports for broadcast, multicast and unknown
destinations; never back out of the port it came in on).

Every copy of a frame leaving towards one port gets its own draws, in this
order, from one random generator seeded with --seed:
  1. lost with probability --loss;
  2. delayed by --delay-ms +/- --jitter-ms (uniform), counted from the
     kernel's receive timestamp of the frame; delayed frames leave
     each port in the order they arrived (a FIFO, like a queue on a real
     link), unless --jitter-reorders lets jitter swap them as netem does;
  3. with probability --reorder, held back a further --reorder-ms, so that
     frames that arrive in the meantime overtake it;
  4. with probability --duplicate, sent twice (the copy right after the
     original; the copy is not lost or delayed separately).
Four numbers are drawn for every copy whatever the outcome, so the fate of
the k-th copy depends only on the seed and k: the same seed and the same
frame order give the same losses. (Frame order itself depends on timing.)

Loss is per Ethernet frame: a UDP datagram larger than the MTU, which IP
cuts into fragments, is lost when any one of its fragments is lost.

The switch never busy-polls: it sleeps in select() on an epoll set with a
timeout (microsecond resolution) up to the next scheduled departure, less
the kernel's measured wake-up latency.
SIGUSR1 prints the counters and goes on; SIGTERM or SIGINT prints them and
exits 0. With --stats-file the same line is also written (atomically) to
that file. Counters:
  frames_in    frames read from the ports (frames the switch sent itself,
               which AF_PACKET also shows, are not read or not counted)
  copies       frame copies bound for a port (a flooded frame makes several)
  dropped      copies lost (--loss)
  reordered    copies held back (--reorder)
  duplicated   copies sent twice (--duplicate)
  forwarded    frames written to ports (duplicates included)
  flooded      frames flooded because the destination MAC was unknown
  filtered     frames whose destination sits behind the port they came in on
  overflow     copies dropped because --queue-limit frames were waiting
  send_errors  writes the kernel refused (counted as lost)
  kernel_drops frames the kernel dropped because the switch's receive
               buffer was full (the switch fell behind)
  pending      frames still scheduled (at exit: discarded)
  late_max_ms, late_mean_ms
               how long after its scheduled time a frame actually left
               (negative: early; see wake_bias_ms). The schedule counts from
               the kernel's receive timestamp of the frame, so time spent
               waiting in the socket buffer for a busy switch shows here
               instead of silently lengthening the delay
  wake_bias_ms how much earlier than a frame's time the switch asks to be
               woken: the kernel's measured wake-up latency (moving
               average, at most 0.5 ms); frames due within it leave at once,
               so on average frames leave on time instead of that much late
  cpu_s, uptime_s
"""
import argparse
import errno
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # also the cmsg type SCM_TIMESTAMPNS
TIMESPEC = struct.Struct("qq")
CMSG_TS_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
PACKET_OUTGOING = 4
WAKE_BIAS_MAX = 0.0005  # never send a frame more than this early
BATCH = 32  # frames read from one port before sending what is due (bounds lateness)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="user-space switch with per-frame loss, delay, reorder and duplication",
        epilog="See the module docstring (head of this file) for the counters.",
    )
    p.add_argument("ports", nargs="+", metavar="IFNAME", help="interfaces to switch between")
    p.add_argument("--loss", type=float, default=0.0, help="probability a frame is lost (0..1)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="mean one-way delay added (ms)")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="delay varies uniformly by +/- this (ms)")
    p.add_argument("--reorder", type=float, default=0.0, help="probability a frame is held back")
    p.add_argument("--reorder-ms", type=float, default=10.0, help="how long a held-back frame waits extra (ms)")
    p.add_argument("--duplicate", type=float, default=0.0, help="probability a frame is sent twice")
    p.add_argument("--jitter-reorders", action="store_true",
                   help="let jitter reorder frames (netem-like); default keeps per-port FIFO order")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--flood", action="store_true", help="do not learn MACs; flood every frame (a hub)")
    p.add_argument("--queue-limit", type=int, default=50000, help="most frames waiting at once")
    p.add_argument("--rcvbuf", type=int, default=4 << 20, help="receive buffer per port (bytes)")
    p.add_argument("--ready-file", help="write the PID here once all ports are open")
    p.add_argument("--stats-file", help="also write the counters line here on SIGUSR1 and at exit")
    a = p.parse_args(argv)
    for name in ("loss", "reorder", "duplicate"):
        v = getattr(a, name)
        if not 0.0 <= v <= 1.0:
            p.error(f"--{name} must be between 0 and 1")
    if a.delay_ms < 0 or a.jitter_ms < 0 or a.reorder_ms < 0:
        p.error("delays must not be negative")
    if a.jitter_ms > a.delay_ms:
        p.error("--jitter-ms must not exceed --delay-ms (a frame cannot leave before it came)")
    if len(set(a.ports)) != len(a.ports) or len(a.ports) < 2:
        p.error("give at least two distinct interfaces")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    return a


def open_port(name, rcvbuf):
    # Protocol 0 at creation: the socket receives nothing until bind() has
    # tied it to this one interface (else it would briefly see every
    # interface's traffic).
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # older kernel: the pkttype check below filters them
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((name, ETH_P_ALL))
    s.setblocking(False)
    return s


class Switch:
    COUNTERS = ("frames_in", "copies", "dropped", "reordered", "duplicated", "forwarded",
                "flooded", "filtered", "overflow", "send_errors", "kernel_drops")

    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.names = list(a.ports)
        self.socks = [open_port(n, a.rcvbuf) for n in self.names]
        self.others = [tuple(j for j in range(len(self.socks)) if j != i) for i in range(len(self.socks))]
        self.macs = {}
        self.heap = []  # (due, seq, port, frame)
        self.seq = 0
        self.fifo = [0.0] * len(self.socks)  # last scheduled departure per port
        self.c = dict.fromkeys(self.COUNTERS, 0)
        self.late_sum = 0.0
        self.late_max = 0.0
        self.sent_timed = 0
        self.max_queue = 0
        self.start = time.monotonic()
        self.stop = False
        self.want_stats = False
        self.dead = set()
        self.wake_bias = 0.0  # seconds; see run()
        # Impairment parameters in seconds
        self.loss = a.loss
        self.dmin = (a.delay_ms - a.jitter_ms) / 1000.0
        self.dspan = 2 * a.jitter_ms / 1000.0
        self.reorder = a.reorder
        self.rhold = a.reorder_ms / 1000.0
        self.dup = a.duplicate
        self.fifo_order = not a.jitter_reorders

    # --- frames in ---------------------------------------------------------
    def read_port(self, i):
        s = self.socks[i]
        # The kernel's receive timestamp (CLOCK_REALTIME) says when the frame
        # reached the port; the delay counts from then, not from when the
        # switch got round to reading it.
        now_mono = time.monotonic()
        rt_off = time.time() - now_mono
        for _ in range(BATCH):
            try:
                frame, anc, _, addr = s.recvmsg(65536, CMSG_TS_SPACE)
            except BlockingIOError:
                return
            except OSError as e:
                self.port_gone(i, e)
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            arrived = now_mono
            if anc and anc[0][1] == SO_TIMESTAMPNS:
                sec, nsec = TIMESPEC.unpack_from(anc[0][2])
                t = sec + nsec * 1e-9 - rt_off
                if t < arrived:  # never in the future (clock step)
                    arrived = t
            self.handle(frame, i, arrived)

    def handle(self, frame, i, now):
        c = self.c
        c["frames_in"] += 1
        if len(frame) < 14:
            return
        dst = frame[0:6]
        src = frame[6:12]
        if not src[0] & 1:
            self.macs[src] = i
        if dst[0] & 1 or self.a.flood:
            outs = self.others[i]
        else:
            p = self.macs.get(dst)
            if p is None:
                c["flooded"] += 1
                outs = self.others[i]
            elif p == i:
                c["filtered"] += 1
                return
            else:
                outs = (p,)
        rnd = self.rng.random
        for p in outs:
            c["copies"] += 1
            u_loss, u_delay, u_reorder, u_dup = rnd(), rnd(), rnd(), rnd()
            if u_loss < self.loss:
                c["dropped"] += 1
                continue
            if p in self.dead:
                continue
            if len(self.heap) >= self.a.queue_limit:
                c["overflow"] += 1
                continue
            due = now + self.dmin + u_delay * self.dspan
            if u_reorder < self.reorder:
                c["reordered"] += 1
                due = max(due, self.fifo[p]) + self.rhold  # does not move the FIFO
            elif self.fifo_order:
                if due < self.fifo[p]:
                    due = self.fifo[p]
                self.fifo[p] = due
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, p, frame))
            if u_dup < self.dup:
                c["duplicated"] += 1
                self.seq += 1
                heapq.heappush(self.heap, (due, self.seq, p, frame))
        if len(self.heap) > self.max_queue:
            self.max_queue = len(self.heap)

    # --- frames out --------------------------------------------------------
    def flush(self):
        heap = self.heap
        c = self.c
        early = self.wake_bias
        while heap:
            now = time.monotonic()
            if heap[0][0] > now + early:
                return heap[0][0] - now - early
            due, _, p, frame = heapq.heappop(heap)
            late = now - due
            self.late_sum += late
            self.sent_timed += 1
            if late > self.late_max:
                self.late_max = late
            try:
                self.socks[p].send(frame)
                c["forwarded"] += 1
            except (BlockingIOError, InterruptedError):
                c["send_errors"] += 1
            except OSError as e:
                if e.errno in (errno.ENOBUFS, errno.EMSGSIZE, errno.EAGAIN):
                    c["send_errors"] += 1
                else:
                    c["send_errors"] += 1
                    self.port_gone(p, e)
        return None

    def port_gone(self, i, err):
        if i in self.dead:
            return
        self.dead.add(i)
        print(f"lossy_switch: port {self.names[i]} failed ({err}); no longer used", file=sys.stderr, flush=True)
        try:
            self.ep.unregister(self.socks[i].fileno())
        except (OSError, ValueError):
            pass

    # --- counters ----------------------------------------------------------
    def stats_line(self):
        for s in self.socks:
            try:
                _, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                self.c["kernel_drops"] += drops  # reading resets the kernel's counters
            except OSError:
                pass
        t = os.times()
        parts = [f"{k}={v}" for k, v in self.c.items()]
        mean = self.late_sum / self.sent_timed * 1000 if self.sent_timed else 0.0
        parts += [
            f"pending={len(self.heap)}",
            f"max_queue={self.max_queue}",
            f"late_max_ms={self.late_max * 1000:.3f}",
            f"late_mean_ms={mean:.3f}",
            f"wake_bias_ms={self.wake_bias * 1000:.3f}",
            f"cpu_s={t.user + t.system:.2f}",
            f"uptime_s={time.monotonic() - self.start:.1f}",
        ]
        return "lossy_switch: " + " ".join(parts)

    def report(self):
        line = self.stats_line()
        print(line, file=sys.stderr, flush=True)
        if self.a.stats_file:
            tmp = self.a.stats_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(line + "\n")
            os.replace(tmp, self.a.stats_file)

    # --- main loop ---------------------------------------------------------
    def run(self):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

        def on_stop(signum, frame):
            self.stop = True

        def on_usr1(signum, frame):
            self.want_stats = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGUSR1, on_usr1)

        self.ep = select.epoll()
        fd2port = {}
        for i, s in enumerate(self.socks):
            self.ep.register(s.fileno(), select.EPOLLIN)
            fd2port[s.fileno()] = i
        self.ep.register(wake_r, select.EPOLLIN)
        epfd = self.ep.fileno()

        a = self.a
        ports = ",".join(self.names) if len(self.names) <= 4 else f"{self.names[0]}..{self.names[-1]}"
        print(f"lossy_switch: pid={os.getpid()} ports={ports} nports={len(self.names)} loss={a.loss} "
              f"delay_ms={a.delay_ms} jitter_ms={a.jitter_ms} reorder={a.reorder} "
              f"reorder_ms={a.reorder_ms} duplicate={a.duplicate} seed={a.seed} "
              f"{'hub' if a.flood else 'learning'} {'jitter-reorders' if a.jitter_reorders else 'fifo'}",
              file=sys.stderr, flush=True)
        if a.ready_file:
            tmp = a.ready_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, a.ready_file)

        timeout = None
        while not self.stop:
            # epoll's own timeout has millisecond resolution (rounded up);
            # select() on the epoll fd sleeps to the microsecond.
            if timeout is None or timeout > 0:
                asleep = time.monotonic()
                ready, _, _ = select.select([epfd], [], [], timeout)
                if not ready and timeout is not None:
                    # Woken by the timer: learn how late the kernel wakes us
                    # (some 0.1-0.3 ms in a VM) and wake that much earlier
                    # from now on (flush() sends frames due within it).
                    over = time.monotonic() - asleep - timeout
                    self.wake_bias += 0.05 * (min(max(over, 0.0), WAKE_BIAS_MAX) - self.wake_bias)
            for fd, ev in self.ep.poll(0):
                i = fd2port.get(fd)
                if i is None:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif ev & (select.EPOLLERR | select.EPOLLHUP) and not ev & select.EPOLLIN:
                    self.port_gone(i, "EPOLLERR")
                else:
                    self.read_port(i)
                    self.flush()  # frames due while reading leave before the next port's batch
            timeout = self.flush()
            if self.want_stats:
                self.want_stats = False
                self.report()
        self.report()
        return 0


def main(argv):
    a = parse_args(argv)
    try:
        sw = Switch(a)
    except OSError as e:
        print(f"lossy_switch: cannot open ports: {e}", file=sys.stderr)
        return 1
    return sw.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
