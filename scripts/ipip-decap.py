#!/usr/bin/env python3
"""Userspace IP-in-IP decapsulator for a lab backend namespace.

This kernel has no ipip/sit/ip6_tunnel modules, so a backend cannot terminate the tunnels
Sluice's `ipip` forwarding sends. This process does it in userspace:

  raw socket (outer packets addressed to this host) -> strip the outer header
  -> write the inner packet to a TUN device (sl-tun0) -> the kernel receives it as if it
  arrived on sl-tun0 and delivers it to the server listening on the VIP (held on lo).

Sockets:
  AF_INET  / SOCK_RAW / 4   IPv4-in-IPv4  (data includes the outer IPv4 header; IHL-aware strip)
  AF_INET  / SOCK_RAW / 41  IPv6-in-IPv4
  AF_INET6 / SOCK_RAW / 41  IPv6-in-IPv6  (IPv6 raw sockets hand over the payload only)
  AF_INET6 / SOCK_RAW / 4   IPv4-in-IPv6
Replies do not come back through here: the server answers the client directly (DSR).

Counts decapsulated and bad packets; prints them as JSON on SIGTERM/SIGINT (then exits 0)
and on SIGUSR1 (and writes them to --stats-file if given).
"""
import argparse
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4
IPPROTO_IPV6 = 41
MAX_PACKET = 65535


def sh(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def sysctl_write(key, value):
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError:
        pass


class Decap:
    def __init__(self, tun_name, stats_file):
        self.tun_name = tun_name
        self.stats_file = stats_file
        self.counts = {"decapsulated": 0, "decap4in4": 0, "decap6in4": 0, "decap6in6": 0, "decap4in6": 0,
                       "bad": 0, "badShort": 0, "badVersion": 0, "badLength": 0, "writeErrors": 0}
        self.generation = 0
        self.stop = False
        self.want_report = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def report(self, event):
        self.generation += 1
        out = {"event": event, "tun": self.tun_name, "generation": self.generation, **self.counts}
        line = json.dumps(out)
        print(line, flush=True)
        if self.stats_file:
            tmp = self.stats_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(line + "\n")
            os.replace(tmp, self.stats_file)

    def bad(self, kind):
        self.counts["bad"] += 1
        self.counts[kind] += 1

    def inner_ok(self, inner, version):
        """Checks the inner packet's version and that its length field fits what we got."""
        if version == 4:
            if len(inner) < 20:
                self.bad("badShort")
                return None
            if inner[0] >> 4 != 4:
                self.bad("badVersion")
                return None
            total = struct.unpack_from("!H", inner, 2)[0]
            if total < 20 or total > len(inner):
                self.bad("badLength")
                return None
            return inner[:total]
        if len(inner) < 40:
            self.bad("badShort")
            return None
        if inner[0] >> 4 != 6:
            self.bad("badVersion")
            return None
        total = 40 + struct.unpack_from("!H", inner, 4)[0]
        if total > len(inner):
            self.bad("badLength")
            return None
        return inner[:total]

    def run(self):
        tun = open_tun(self.tun_name)
        sh("ip", "link", "set", self.tun_name, "up")
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.%s.rp_filter" % self.tun_name):
            sysctl_write(key, 0)
        sysctl_write("net.ipv4.conf.%s.accept_local" % self.tun_name, 1)

        socks = {}
        for family, proto, outer, kind, inner_version in (
            (socket.AF_INET, IPPROTO_IPIP, True, "decap4in4", 4),
            (socket.AF_INET, IPPROTO_IPV6, True, "decap6in4", 6),
            (socket.AF_INET6, IPPROTO_IPV6, False, "decap6in6", 6),
            (socket.AF_INET6, IPPROTO_IPIP, False, "decap4in6", 4),
        ):
            try:
                s = socket.socket(family, socket.SOCK_RAW, proto)
            except OSError as e:
                print("ipip-decap: cannot open raw socket family=%d proto=%d: %s" % (family, proto, e), file=sys.stderr)
                continue
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            s.setblocking(False)
            socks[s.fileno()] = (s, outer, kind, inner_version)
        if not socks:
            raise SystemExit("ipip-decap: no raw socket could be opened")

        self.report("ready")
        poller = select.poll()
        for fd in socks:
            poller.register(fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while not self.stop:
            events = poller.poll(1000)
            if self.want_report:
                self.want_report = False
                self.report("stats")
            for fd, _ in events:
                if fd == self.wake_r:
                    os.read(self.wake_r, 64)
                    continue
                s, outer, kind, inner_version = socks[fd]
                while True:
                    try:
                        data = s.recv(MAX_PACKET)
                    except BlockingIOError:
                        break
                    except InterruptedError:
                        continue
                    if outer:
                        # IPv4 raw sockets include the outer header: skip IHL*4 bytes.
                        if len(data) < 20 or data[0] >> 4 != 4:
                            self.bad("badShort")
                            continue
                        ihl = (data[0] & 0x0F) * 4
                        if ihl < 20 or len(data) < ihl:
                            self.bad("badLength")
                            continue
                        inner = data[ihl:]
                    else:
                        inner = data
                    inner = self.inner_ok(inner, inner_version)
                    if inner is None:
                        continue
                    try:
                        os.write(tun, inner)
                    except OSError:
                        self.counts["writeErrors"] += 1
                        continue
                    self.counts["decapsulated"] += 1
                    self.counts[kind] += 1
        os.close(tun)
        for s, _, _, _ in socks.values():
            s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tun", default="sl-tun0", help="TUN device name (default sl-tun0)")
    ap.add_argument("--stats-file", default=None, help="write counters here on SIGUSR1 and on exit")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = ap.parse_args()
    d = Decap(args.tun, args.stats_file)

    def on_stop(signum, _frame):
        d.stop = True
        try:
            os.write(d.wake_w, b"x")
        except OSError:
            pass

    def on_usr1(_signum, _frame):
        d.want_report = True
        try:
            os.write(d.wake_w, b"r")
        except OSError:
            pass

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_usr1)
    if args.watch_stdin:
        def watch():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            on_stop(None, None)
        threading.Thread(target=watch, daemon=True).start()
    d.run()
    d.report("stopped")


if __name__ == "__main__":
    main()
