#!/usr/bin/env python3
"""MPTCP client and server for the Sluice lab (Node has no MPTCP sockets).

  mptcp-peer.py server --port P --name NAME --report FILE [--plain]
      Listens on [::]:P (dual stack) with an MPTCP socket (IPPROTO_MPTCP = 262; an MPTCP
      listener also accepts plain TCP clients). Per connection:
        client -> "GET <nbytes> <seed>\\n"
        server -> "NAME <name> TOKEN <hex> MPTCP <0|1>\\n", then <nbytes> of the stream of <seed>
        client -> "INFO\\n" (any number of times)
        server -> one JSON line: this side's MPTCP_INFO and the peers of its subflows
      and keeps the connection until the client closes. Right before closing it appends one JSON
      line per connection to FILE (flushed): client address/port, bytes sent, subflows
      (MPTCP_INFO) when the client asked and at close, subflow peers (MPTCP_SUBFLOW_ADDRS).
      Prints "mptcp-peer: listening ..." on stdout once it accepts connections.

  mptcp-peer.py client --target HOST:PORT --connections N --bytes B --concurrency C
                       --report FILE [--hold-ms MS] [--timeout S] [--seed S] [--plain]
                       [--hold-until FILE --ready FILE]
      Opens N MPTCP connections (C at a time). Each sends its request first (so the client's
      first data segment carries the 22-byte MP_CAPABLE), checks the header, reads exactly B
      bytes and compares them with the stream of its seed byte for byte, then waits until the
      connection has 2 subflows or MS passed (polls MPTCP_INFO), asks the server for its view
      ("INFO"), and closes. With --hold-until every connection, once checked, waits until FILE
      exists before closing (the last one to get there writes --ready), so the caller can look
      at the live subflows (ss -tiM); after the hold it also records its subflow count
      (subflowsAfterHold), to see whether something during the hold cost it a subflow. Writes one JSON report (per connection and totals) to
      FILE. The whole run is bounded by --timeout: it always exits (2 when it timed out).

The stream of a seed is SHAKE-256("sluice-mptcp-peer:<seed>"), as long as asked.

struct mptcp_info (include/uapi/linux/mptcp.h; native byte order), the offsets used here:
  0 u8 mptcpi_subflows (extra subflows, i.e. joins; the initial subflow is not counted)
  3 u8 mptcpi_subflows_max   8 u32 mptcpi_flags (bit 0 fallback, bit 1 remote key received)
  12 u32 mptcpi_token (this side's local token)   80 u8 mptcpi_subflows_total (Linux >= 6.8:
  subflows + the initial one while it lives). Total size 96 on Linux >= 6.10.
MPTCP_SUBFLOW_ADDRS (optname 3) takes struct mptcp_subflow_data {u32 size_subflow_data,
num_subflows, size_kernel, size_user} (16 bytes, in AND out) followed by size_user-sized
entries {sockaddr_storage local; sockaddr_storage remote} (256 bytes); Python's getsockopt
cannot pass input bytes, so that one goes through libc with ctypes.
"""
import argparse
import concurrent.futures
import ctypes
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO = 1
MPTCP_SUBFLOW_ADDRS = 3
MPTCP_INFO_LEN = 96
INFO_FLAG_FALLBACK = 1
INFO_FLAG_REMOTE_KEY_RECEIVED = 2
SUBFLOW_DATA_LEN = 16
SUBFLOW_ADDRS_LEN = 256
MAX_SUBFLOWS = 16
MAX_REQUEST = 1 << 30
LINE_MAX = 4096
CHUNK = 1 << 16

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def stream(seed, n):
    return hashlib.shake_256(b"sluice-mptcp-peer:%d" % seed).digest(n)


def norm_addr(host):
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def mptcp_info(sock):
    """This socket's MPTCP_INFO as a dict, or None (plain TCP socket, or an error)."""
    try:
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, MPTCP_INFO_LEN)
    except OSError as e:
        return {"error": os.strerror(e.errno) if e.errno else str(e)}
    if len(raw) < 16:
        return {"error": "short MPTCP_INFO (%d bytes)" % len(raw)}
    extra = raw[0]
    flags, token = struct.unpack_from("=II", raw, 8)
    fallback = bool(flags & INFO_FLAG_FALLBACK)
    if len(raw) > 80:
        total = raw[80]
    else:  # older kernels: assume the initial subflow lives
        total = extra + (0 if fallback else 1)
    return {
        "subflows": total,
        "extraSubflows": extra,
        "subflowsMax": raw[3],
        "fallback": fallback,
        "remoteKey": bool(flags & INFO_FLAG_REMOTE_KEY_RECEIVED),
        "token": "%08x" % token,
        "len": len(raw),
    }


def parse_sockaddr(buf, off):
    fam = struct.unpack_from("=H", buf, off)[0]
    if fam == socket.AF_INET:
        port = struct.unpack_from("!H", buf, off + 2)[0]
        host = socket.inet_ntop(socket.AF_INET, bytes(buf[off + 4 : off + 8]))
        return [host, port]
    if fam == socket.AF_INET6:
        port = struct.unpack_from("!H", buf, off + 2)[0]
        host = socket.inet_ntop(socket.AF_INET6, bytes(buf[off + 8 : off + 24]))
        return [norm_addr(host), port]
    return None


def subflow_addrs(sock):
    """[{local: [host, port], remote: [host, port]}] of every subflow, or None."""
    size = SUBFLOW_DATA_LEN + MAX_SUBFLOWS * SUBFLOW_ADDRS_LEN
    buf = ctypes.create_string_buffer(size)
    struct.pack_into("=IIII", buf, 0, SUBFLOW_DATA_LEN, 0, 0, SUBFLOW_ADDRS_LEN)
    optlen = ctypes.c_uint32(size)
    r = libc().getsockopt(sock.fileno(), SOL_MPTCP, MPTCP_SUBFLOW_ADDRS, buf, ctypes.byref(optlen))
    if r != 0:
        return None
    raw = buf.raw
    _, num, size_kernel, size_user = struct.unpack_from("=IIII", raw, 0)
    if size_user == 0:
        return []
    n = min(num, max(0, (optlen.value - SUBFLOW_DATA_LEN) // size_user))
    out = []
    for i in range(n):
        off = SUBFLOW_DATA_LEN + i * size_user
        out.append({"local": parse_sockaddr(raw, off), "remote": parse_sockaddr(raw, off + 128)})
    return out


class LineReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def readline(self):
        """A line without its newline, or None at EOF."""
        while b"\n" not in self.buf:
            if len(self.buf) > LINE_MAX:
                raise ValueError("line too long")
            data = self.sock.recv(LINE_MAX)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("ascii", "replace").strip()


# ---- server -----------------------------------------------------------------------------
def serve(args):
    out_lock = threading.Lock()
    report = open(args.report, "a", buffering=1)

    def emit(rec):
        with out_lock:
            report.write(json.dumps(rec, separators=(",", ":")) + "\n")
            report.flush()

    proto = 0 if args.plain else IPPROTO_MPTCP
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, proto)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::", args.port))
    ls.listen(1024)
    print("mptcp-peer: listening on [::]:%d name %s mptcp %d" % (args.port, args.name, 0 if args.plain else 1), flush=True)

    def view(conn):
        info = mptcp_info(conn)
        addrs = subflow_addrs(conn) if info is not None and "error" not in info else None
        return info, addrs

    def handle(conn, peer):
        rec = {"event": "connection", "name": args.name, "peer": norm_addr(peer[0]), "port": peer[1], "sent": 0}
        try:
            conn.settimeout(args.idle_timeout)
            rd = LineReader(conn)
            line = rd.readline()
            parts = (line or "").split()
            if len(parts) != 3 or parts[0] != "GET":
                raise ValueError("bad request %r" % line)
            n, seed = int(parts[1]), int(parts[2])
            if n < 0 or n > MAX_REQUEST:
                raise ValueError("bad size %d" % n)
            rec["request"] = {"bytes": n, "seed": seed}
            info = mptcp_info(conn)
            mptcp = info is not None and "error" not in info and not info["fallback"]
            rec["mptcp"] = mptcp
            rec["token"] = info.get("token") if info else None
            conn.sendall(b"NAME %s TOKEN %s MPTCP %d\n" % (args.name.encode(), (rec["token"] or "-").encode(), 1 if mptcp else 0))
            data = memoryview(stream(seed, n))
            for off in range(0, n, CHUNK):
                conn.sendall(data[off : off + CHUNK])
                rec["sent"] = min(n, off + CHUNK)
            max_sub = 0
            while True:
                line = rd.readline()
                if line is None:
                    break
                if line == "INFO":
                    info, addrs = view(conn)
                    if info and "subflows" in info:
                        max_sub = max(max_sub, info["subflows"])
                    rec["atQuery"] = {"info": info, "subflowPeers": addrs}
                    conn.sendall((json.dumps({"name": args.name, "info": info, "subflowPeers": addrs}, separators=(",", ":")) + "\n").encode())
                else:
                    raise ValueError("bad command %r" % line)
            info, addrs = view(conn)
            if info and "subflows" in info:
                max_sub = max(max_sub, info["subflows"])
            rec["atClose"] = {"info": info, "subflowPeers": addrs}
            rec["maxSubflows"] = max_sub
        except Exception as e:  # one bad connection must not stop the server
            rec["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            try:
                conn.close()
            except OSError:
                pass
            emit(rec)

    while True:
        conn, peer = ls.accept()
        threading.Thread(target=handle, args=(conn, peer), daemon=True).start()


# ---- client -----------------------------------------------------------------------------
def parse_target(t):
    if t.startswith("["):
        host, _, port = t[1:].partition("]:")
    else:
        host, _, port = t.rpartition(":")
    return host, int(port)


def client(args):
    host, port = parse_target(args.target)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    proto = 0 if args.plain else IPPROTO_MPTCP
    start = time.monotonic()
    deadline = start + args.timeout
    lock = threading.Lock()
    held = [0]
    release = threading.Event()

    def remaining():
        return deadline - time.monotonic()

    def one(i):
        seed = args.seed + i
        rec = {"index": i, "seed": seed, "connected": False, "bytesOk": False, "received": 0, "backend": None, "subflows": 0, "error": None}
        s = socket.socket(fam, socket.SOCK_STREAM, proto)
        try:
            s.settimeout(max(0.1, min(args.io_timeout, remaining())))
            s.connect((host, port))
            rec["connected"] = True
            rec["localPort"] = s.getsockname()[1]
            s.sendall(b"GET %d %d\n" % (args.bytes, seed))
            rd = LineReader(s)
            hdr = (rd.readline() or "").split()
            if len(hdr) < 2 or hdr[0] != "NAME":
                raise ValueError("bad header %r" % hdr)
            rec["backend"] = hdr[1]
            if len(hdr) >= 4 and hdr[2] == "TOKEN":
                rec["serverToken"] = hdr[3]
            expected = stream(seed, args.bytes)
            got = bytearray(args.bytes)
            mv = memoryview(got)
            pre = rd.buf[: args.bytes]
            mv[: len(pre)] = pre
            rd.buf = rd.buf[len(pre) :]
            have = len(pre)
            while have < args.bytes:
                s.settimeout(max(0.1, min(args.io_timeout, remaining())))
                k = s.recv_into(mv[have:], min(CHUNK * 4, args.bytes - have))
                if k == 0:
                    raise ConnectionError("EOF after %d of %d bytes" % (have, args.bytes))
                have += k
            rec["received"] = have
            if got == expected:
                rec["bytesOk"] = True
            else:
                rec["firstMismatch"] = next(j for j in range(args.bytes) if got[j] != expected[j])
            if not args.plain:
                hold_end = time.monotonic() + args.hold_ms / 1000.0
                info = mptcp_info(s)
                while info is not None and info.get("subflows", 0) < 2 and time.monotonic() < hold_end and remaining() > 0:
                    time.sleep(0.01)
                    info = mptcp_info(s)
                rec["info"] = info
                rec["subflows"] = info.get("subflows", 0) if info else 0
                rec["subflowAddrs"] = subflow_addrs(s)
            else:
                rec["subflows"] = 1
            if args.hold_until:
                with lock:
                    held[0] += 1
                    if held[0] == args.connections and args.ready:
                        with open(args.ready + ".tmp", "w") as f:
                            f.write("%d\n" % held[0])
                        os.rename(args.ready + ".tmp", args.ready)
                while not os.path.exists(args.hold_until) and remaining() > 0 and not release.is_set():
                    time.sleep(0.02)
            s.settimeout(max(0.1, min(args.io_timeout, remaining())))
            # The client counts a join subflow once it sent the join's third ACK; the server
            # counts it once that ACK arrived, which on a loaded machine (or through a userspace
            # decapsulator) can be after INFO did. So ask again, bounded, while the server sees
            # fewer subflows than this side: a subflow that never reaches the server still shows.
            ask_end = time.monotonic() + min(1.0, max(0.0, remaining()))
            while True:
                s.sendall(b"INFO\n")
                line = rd.readline()
                rec["server"] = json.loads(line) if line else None
                seen = ((rec["server"] or {}).get("info") or {}).get("subflows", 0)
                if args.plain or line is None or seen >= rec["subflows"] or time.monotonic() >= ask_end:
                    break
                time.sleep(0.02)
            if args.hold_until and not args.plain:
                # After a hold (a Sluice restart meanwhile): the exchange above crossed both
                # subflows' flow entries; a subflow reset by a wrong backend is gone by now.
                time.sleep(0.3)
                after = mptcp_info(s)
                rec["subflowsAfterHold"] = after.get("subflows", 0) if after else 0
        except Exception as e:
            rec["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            try:
                s.close()
            except OSError:
                pass
        return rec

    results = [None] * args.connections
    timed_out = False
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.concurrency))
    futs = {pool.submit(one, i): i for i in range(args.connections)}
    try:
        for f in concurrent.futures.as_completed(futs, timeout=max(0.1, remaining())):
            results[futs[f]] = f.result()
    except concurrent.futures.TimeoutError:
        timed_out = True
        release.set()
    per = [r if r is not None else {"index": i, "error": "not finished before --timeout"} for i, r in enumerate(results)]
    subflow_hist = {}
    backends = {}
    errors = {}
    for r in per:
        k = str(r.get("subflows", 0))
        subflow_hist[k] = subflow_hist.get(k, 0) + 1
        if r.get("backend"):
            backends[r["backend"]] = backends.get(r["backend"], 0) + 1
        if r.get("error"):
            kind = r["error"].split(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
    rep = {
        "target": args.target,
        "plain": args.plain,
        "connections": args.connections,
        "bytes": args.bytes,
        "completed": sum(1 for r in per if r.get("server") is not None and not r.get("error")),
        "bytesOk": sum(1 for r in per if r.get("bytesOk")),
        "twoSubflows": sum(1 for r in per if r.get("subflows", 0) >= 2),
        "subflows": subflow_hist,
        "backends": backends,
        "errors": errors,
        "timedOut": timed_out,
        "elapsedMs": int((time.monotonic() - start) * 1000),
        "perConnection": per,
    }
    with open(args.report + ".tmp", "w") as f:
        json.dump(rep, f)
    os.rename(args.report + ".tmp", args.report)
    print(json.dumps({k: v for k, v in rep.items() if k != "perConnection"}), flush=True)
    sys.stdout.flush()
    os._exit(2 if timed_out else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--report", required=True)
    s.add_argument("--plain", action="store_true", help="plain TCP listener")
    s.add_argument("--idle-timeout", type=float, default=60.0)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--connections", type=int, required=True)
    c.add_argument("--bytes", type=int, required=True)
    c.add_argument("--concurrency", type=int, default=1)
    c.add_argument("--report", required=True)
    c.add_argument("--hold-ms", type=int, default=1000)
    c.add_argument("--timeout", type=float, default=120.0)
    c.add_argument("--io-timeout", type=float, default=20.0)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--plain", action="store_true", help="plain TCP client")
    c.add_argument("--hold-until", default=None)
    c.add_argument("--ready", default=None)
    a = ap.parse_args()
    if a.cmd == "server":
        serve(a)
    else:
        if a.connections < 1 or a.bytes < 0 or a.bytes > MAX_REQUEST or a.concurrency < 1:
            ap.error("bad --connections/--bytes/--concurrency")
        if a.hold_until and a.concurrency < a.connections:
            ap.error("--hold-until needs --concurrency >= --connections (all connections open at once)")
        client(a)


if __name__ == "__main__":
    main()
