#!/usr/bin/env python3
"""Turn off checksum and segmentation offloads on network interfaces.

    offload_off.py IFNAME...

A veth end with tx checksum offload hands its peer UDP/TCP packets whose
checksum is not filled in yet (CHECKSUM_PARTIAL). The kernel trusts such a
packet only while it stays an skb; once lossy_switch.py has read it from an
AF_PACKET socket and written it out again as plain bytes, the receiver
checks the checksum, finds it wrong and drops the datagram (UDP
InCsumErrors). With TSO/GSO on, TCP hands the veth 64 KB super-frames, which
would make the switch lose or delay 40 wire frames as one. So netlab.sh runs
this on both ends of every veth pair before the switch sees a frame: then
every frame the switch reads is a complete frame of at most MTU bytes with
its checksums filled in, as on a real wire.

Uses the legacy SIOCETHTOOL ioctls (standard library only; no ethtool
binary needed). Exits non-zero if a feature is still on afterwards.
"""
import ctypes
import fcntl
import socket
import struct
import sys

SIOCETHTOOL = 0x8946
# (get, set) command numbers from linux/ethtool.h
FEATURES = {
    "tx-checksumming": (0x00000016, 0x00000017),  # ETHTOOL_[GS]TXCSUM
    "tcp-segmentation-offload": (0x0000001E, 0x0000001F),  # ETHTOOL_[GS]TSO
    "generic-segmentation-offload": (0x00000023, 0x00000024),  # ETHTOOL_[GS]GSO
}


def ethtool_value(sock, ifname, cmd, data=0):
    """One struct ethtool_value ioctl; returns the data field afterwards."""
    buf = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf)).ljust(40, b"\0")
    fcntl.ioctl(sock, SIOCETHTOOL, ifreq)
    return struct.unpack("II", buf.raw)[1]


def main(names):
    if not names:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = []
    for name in names:
        for feature, (get, set_) in FEATURES.items():
            ethtool_value(sock, name, set_, 0)
        for feature, (get, set_) in FEATURES.items():
            if ethtool_value(sock, name, get):
                bad.append(f"{name}: {feature} still on")
    for line in bad:
        print("offload_off:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
