#!/usr/bin/env python3
"""Lab client for fragments and IP options/extension headers (e2e test/e2e/fragments.test.ts).

  fragment-client.py udp      --vip V --port P --count N --size S [--reorder] [--no-df] [--timeout T]
  fragment-client.py options  --vip V --tcp-port P --udp-port Q [--timeout T]

udp: N datagrams of S bytes, each from its own socket (its own source port). Without --reorder
the kernel fragments them (the path MTU is the segment's). With --reorder the client crafts the
fragments itself on a raw socket (IPPROTO_RAW: header included) and sends the first fragment
last. Prints JSON: sent, answered (replies received on the datagram's own socket).

options: one HTTP GET over TCP with an IPv4 option (IPv4 VIP) or with IPv6 destination-options
and hop-by-hop headers (IPv6 VIP), and one UDP datagram with the same; prints JSON of who answered.
Every wait is bounded by --timeout.
"""
import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time

IPPROTO_FRAGMENT = 44
# <linux/in.h>: socket option and value for "never set DF".
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IPV6_HOPOPTS = 54
IPV6_DSTOPTS = 59
# A PadN option filling an 8-byte extension header: next header and length are the kernel's.
PADN_EXT = bytes([0, 0, 1, 4, 0, 0, 0, 0])
# IPv4 option: NOP x3 + end of list (4 bytes, harmless to every router).
IPV4_NOP_OPTIONS = bytes([1, 1, 1, 0])


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", length, 17)
    c = csum(pseudo + hdr + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, c) + payload


def local_address(vip: str, family: int) -> bytes:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.connect((vip, 9))
    addr = s.getsockname()[0]
    s.close()
    return ipaddress.ip_address(addr).packed


def fragments4(src: bytes, dst: bytes, ident: int, l4: bytes, mtu: int) -> list:
    chunk = (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(l4), chunk):
        part = l4[off : off + chunk]
        more = off + chunk < len(l4)
        flags = (0x2000 if more else 0) | (off // 8)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(part), ident, flags, 64, 17, 0, src, dst)
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        out.append(hdr + part)
    return out


def fragments6(src: bytes, dst: bytes, ident: int, l4: bytes, mtu: int) -> list:
    chunk = (mtu - 40 - 8) // 8 * 8
    out = []
    for off in range(0, len(l4), chunk):
        part = l4[off : off + chunk]
        more = off + chunk < len(l4)
        frag = struct.pack("!BBHI", 17, 0, off | (1 if more else 0), ident)
        hdr = struct.pack("!IHBB16s16s", 0x60000000, 8 + len(part), IPPROTO_FRAGMENT, 64, src, dst)
        out.append(hdr + frag + part)
    return out


def udp_run(a) -> dict:
    family = socket.AF_INET6 if ":" in a.vip else socket.AF_INET
    src = local_address(a.vip, family)
    dst = ipaddress.ip_address(a.vip).packed
    raw = None
    if a.reorder:
        raw = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    socks = []
    sent = 0
    for i in range(a.count):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        s.setblocking(False)
        if a.no_df and family == socket.AF_INET:
            # IP_PMTUDISC_DONT: the kernel never sets DF on this socket's packets.
            s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        payload = (f"dgram {i} ".encode() + bytes(range(256)) * (a.size // 256 + 1))[: a.size]
        if raw is None:
            s.sendto(payload, (a.vip, a.port))
        else:
            sport = s.getsockname()[1]
            l4 = udp_datagram(src, dst, sport, a.port, payload)
            ident = (os.getpid() * 7919 + i) & (0xFFFF if family == socket.AF_INET else 0xFFFFFFFF)
            frags = (fragments4 if family == socket.AF_INET else fragments6)(src, dst, ident, l4, a.mtu)
            for f in frags[1:] + frags[:1]:  # the first fragment last
                raw.sendto(f, (a.vip, 0))
        sent += 1
        socks.append(s)
        if i % a.burst == a.burst - 1:
            time.sleep(0.01)  # bounded pacing: no burst larger than the backends' socket buffers
    answered = set()
    deadline = time.time() + a.timeout
    pending = {s.fileno(): (i, s) for i, s in enumerate(socks)}
    while pending and time.time() < deadline:
        r, _, _ = select.select(list(pending.keys())[:1000], [], [], 0.2)
        for fd in r:
            i, s = pending.pop(fd)
            try:
                s.recv(65535)
                answered.add(i)
            except OSError:
                pass
    for s in socks:
        s.close()
    return {"sent": sent, "answered": len(answered)}


def recv_all(s, timeout: float) -> bytes:
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(65535)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def options_run(a) -> dict:
    v6 = ":" in a.vip
    family = socket.AF_INET6 if v6 else socket.AF_INET
    out = {}
    for proto in ("tcp", "udp"):
        s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_HOPOPTS, PADN_EXT)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_DSTOPTS, PADN_EXT)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, IPV4_NOP_OPTIONS)
        s.settimeout(a.timeout)
        try:
            if proto == "tcp":
                s.connect((a.vip, a.tcp_port))
                s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
                data = recv_all(s, a.timeout)
                out["tcp"] = data.split(b"\r\n", 1)[0].decode(errors="replace")
            else:
                s.sendto(b"options", (a.vip, a.udp_port))
                out["udp"] = s.recv(65535).decode(errors="replace")
        except OSError as e:
            out[proto] = f"error: {e}"
        finally:
            s.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("udp")
    u.add_argument("--vip", required=True)
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--count", type=int, default=500)
    u.add_argument("--size", type=int, default=4000)
    u.add_argument("--mtu", type=int, default=1500)
    u.add_argument("--reorder", action="store_true")
    u.add_argument("--no-df", action="store_true", help="IPv4: send with IP_PMTUDISC_DONT (no DF bit)")
    u.add_argument("--burst", type=int, default=25, help="datagrams sent back to back before a 10 ms pause")
    u.add_argument("--timeout", type=float, default=10)
    o = sub.add_parser("options")
    o.add_argument("--vip", required=True)
    o.add_argument("--tcp-port", type=int, default=80)
    o.add_argument("--udp-port", type=int, default=53)
    o.add_argument("--timeout", type=float, default=5)
    a = p.parse_args()
    if not (1 <= getattr(a, "count", 1) <= 5000 and 0 < a.timeout <= 60):
        sys.exit("count must be 1..5000, timeout 0..60 s")
    print(json.dumps(udp_run(a) if a.cmd == "udp" else options_run(a)))


if __name__ == "__main__":
    main()
