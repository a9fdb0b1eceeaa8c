/*
 * gen: a bounded 64-byte UDP packet generator for the Sluice pps lab.
 *
 * Sends Ethernet/IPv4/UDP frames on one interface through an AF_PACKET raw socket, in
 * sendmmsg batches. Flow i of `flows` has source address SRCIP + i / P and source port
 * SPORTBASE + i % P, P = ceil(flows / ADDRS) (-A; one address by default), so every flow
 * hashes differently. It always stops by itself: after `count` frames or `duration` seconds,
 * whichever comes first (or on SIGINT/SIGTERM), then prints one JSON line to stdout.
 *
 * Frames are 60 bytes on the wire (14 Ethernet + 20 IPv4 + 8 UDP + 18 payload), i.e. the
 * 64-byte minimum Ethernet frame once a NIC appends the 4-byte FCS (veths have none).
 * -T: 66-byte TCP ACKs with timestamps. -Y: 62-byte TCP SYNs (MSS, SACK permitted), for
 * "every packet a new flow" with a flow space larger than the frames sent.
 * -L: latency mode (UDP): the payload carries a magic and the CLOCK_REALTIME send time in ns,
 * written just before each sendmmsg (use -b 1 so each frame is stamped when it is sent);
 * lat-sink.c subtracts it from the kernel's receive stamp.
 *
 * Up to 65536 flows without -L the frames are built once; beyond that (or with -L) each batch
 * is built as it is sent (a copy of the template and the checksums: tens of ns per frame).
 *
 * usage: gen -i IF -d DSTMAC -S SRCIP [-D DSTIP] [-p DPORT] [-P SPORTBASE] [-f FLOWS] [-A ADDRS]
 *            [-n COUNT] [-t SECONDS] [-r PPS] [-b BATCH] [-s SRCMAC] [-T | -Y] [-L]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* 60 bytes on the wire for UDP; 66 for TCP (20-byte header + NOP NOP timestamps). */
static size_t FRAME_LEN = 60;
#define MAX_BATCH 1024
#define MAX_FLOWS (1L << 24)
#define PREBUILT_FLOWS 65536
/* Latency payload: magic then the send time (CLOCK_REALTIME ns), both in host order. */
#define LAT_MAGIC 0x534c54534c545331ULL /* "SLTSLTS1" */

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static void die(const char *what) {
  fprintf(stderr, "gen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: gen -i IF -d DSTMAC -S SRCIP [-D DSTIP=198.51.100.10] [-p DPORT=53]\n"
          "           [-P SPORTBASE=10000] [-f FLOWS=1024] [-A ADDRS=1] [-n COUNT=10000000] [-t SECONDS=10]\n"
          "           [-T (TCP ACKs) | -Y (TCP SYNs) | -L (UDP, send time in the payload)]\n"
          "           [-r PPS=0 (max)] [-b BATCH=64] [-s SRCMAC (default: IF's MAC)]\n");
  exit(2);
}

static int parse_mac(const char *s, uint8_t mac[6]) {
  unsigned v[6];
  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
  for (int i = 0; i < 6; i++) {
    if (v[i] > 255) return -1;
    mac[i] = (uint8_t)v[i];
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t acc) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) acc += (uint32_t)(p[n - 1] << 8);
  return acc;
}

static uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return (uint16_t)~acc;
}

/* Ethernet + IPv4 header (DF, TTL 64, checksum) of a FRAME_LEN frame carrying `proto`; the rest
 * zeroed. Addresses are already in network order. Returns the IPv4 header. */
static uint8_t *put_eth_ipv4(uint8_t *f, const uint8_t dmac[6], const uint8_t smac[6], uint32_t sip,
                             uint32_t dip, uint8_t proto) {
  memset(f, 0, FRAME_LEN);
  memcpy(f, dmac, 6);
  memcpy(f + 6, smac, 6);
  f[12] = 0x08; f[13] = 0x00;
  uint8_t *ip = f + 14;
  const uint16_t ip_len = (uint16_t)(FRAME_LEN - 14);
  ip[0] = 0x45;
  ip[2] = (uint8_t)(ip_len >> 8); ip[3] = (uint8_t)ip_len;
  ip[6] = 0x40; /* DF */
  ip[8] = 64;   /* TTL */
  ip[9] = proto;
  memcpy(ip + 12, &sip, 4);
  memcpy(ip + 16, &dip, 4);
  uint16_t ck = fold(sum16(ip, 20, 0));
  ip[10] = (uint8_t)(ck >> 8); ip[11] = (uint8_t)ck;
  return ip;
}

/* TCP/UDP checksum of the `len` bytes at `l4` (its checksum field zero) under the pseudo-header of
 * `ip`, written at `at` (offset in l4). UDP's 0 is sent as 0xffff. */
static void put_l4_checksum(const uint8_t *ip, uint8_t *l4, uint16_t len, uint8_t proto, size_t at) {
  uint32_t acc = sum16(ip + 12, 8, 0) + proto + len;
  uint16_t ck = fold(sum16(l4, len, acc));
  if (proto == 17 && ck == 0) ck = 0xffff;
  l4[at] = (uint8_t)(ck >> 8); l4[at + 1] = (uint8_t)ck;
}

/* A pure TCP ACK with the timestamp option (what most mid-connection packets look like). */
static void build_tcp_frame(uint8_t *f, const uint8_t dmac[6], const uint8_t smac[6], uint32_t sip,
                            uint32_t dip, uint16_t sport, uint16_t dport) {
  uint8_t *ip = put_eth_ipv4(f, dmac, smac, sip, dip, 6 /* TCP */);
  uint8_t *tcp = ip + 20;
  const uint16_t tcp_len = (uint16_t)(FRAME_LEN - 34);
  tcp[0] = (uint8_t)(sport >> 8); tcp[1] = (uint8_t)sport;
  tcp[2] = (uint8_t)(dport >> 8); tcp[3] = (uint8_t)dport;
  tcp[4] = 0x12; tcp[7] = 0x34;     /* seq */
  tcp[8] = 0x56; tcp[11] = 0x78;    /* ack */
  tcp[12] = (uint8_t)((tcp_len / 4) << 4);
  tcp[13] = 0x10;                   /* ACK */
  tcp[14] = 0x01; tcp[15] = 0xf5;   /* window */
  tcp[20] = 1; tcp[21] = 1;         /* NOP NOP */
  tcp[22] = 8; tcp[23] = 10;        /* timestamps */
  tcp[27] = 1;
  put_l4_checksum(ip, tcp, tcp_len, 6, 16);
}

/* A SYN with MSS and SACK-permitted options (a new connection, as a spoofed flood sends). */
static void build_syn_frame(uint8_t *f, const uint8_t dmac[6], const uint8_t smac[6], uint32_t sip,
                            uint32_t dip, uint16_t sport, uint16_t dport) {
  uint8_t *ip = put_eth_ipv4(f, dmac, smac, sip, dip, 6 /* TCP */);
  uint8_t *tcp = ip + 20;
  const uint16_t tcp_len = (uint16_t)(FRAME_LEN - 34);
  tcp[0] = (uint8_t)(sport >> 8); tcp[1] = (uint8_t)sport;
  tcp[2] = (uint8_t)(dport >> 8); tcp[3] = (uint8_t)dport;
  tcp[4] = (uint8_t)(sport ^ 0x5a); tcp[5] = (uint8_t)(sip >> 8); tcp[7] = 0x01; /* seq */
  tcp[12] = (uint8_t)((tcp_len / 4) << 4);
  tcp[13] = 0x02;                   /* SYN */
  tcp[14] = 0xfa; tcp[15] = 0xf0;   /* window */
  tcp[20] = 2; tcp[21] = 4; tcp[22] = 0x05; tcp[23] = 0xb4; /* MSS 1460 */
  tcp[24] = 1; tcp[25] = 1; tcp[26] = 4; tcp[27] = 2;       /* NOP NOP SACK permitted */
  put_l4_checksum(ip, tcp, tcp_len, 6, 16);
}

/* Writes the latency payload (magic + CLOCK_REALTIME ns) into a UDP frame and redoes its UDP
 * checksum. */
static void stamp_frame(uint8_t *f, uint64_t now_ns) {
  uint8_t *ip = f + 14;
  uint8_t *udp = ip + 20;
  const uint16_t udp_len = (uint16_t)(FRAME_LEN - 34);
  const uint64_t magic = LAT_MAGIC;
  memcpy(udp + 8, &magic, 8);
  memcpy(udp + 16, &now_ns, 8);
  udp[6] = 0; udp[7] = 0;
  put_l4_checksum(ip, udp, udp_len, 17, 6);
}

static uint64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void build_frame(uint8_t *f, const uint8_t dmac[6], const uint8_t smac[6], uint32_t sip,
                        uint32_t dip, uint16_t sport, uint16_t dport) {
  uint8_t *ip = put_eth_ipv4(f, dmac, smac, sip, dip, 17 /* UDP */);
  uint8_t *udp = ip + 20;
  const uint16_t udp_len = (uint16_t)(FRAME_LEN - 34);
  udp[0] = (uint8_t)(sport >> 8); udp[1] = (uint8_t)sport;
  udp[2] = (uint8_t)(dport >> 8); udp[3] = (uint8_t)dport;
  udp[4] = (uint8_t)(udp_len >> 8); udp[5] = (uint8_t)udp_len;
  memcpy(udp + 8, "sluice-native-bench", udp_len - 8 < 19 ? udp_len - 8 : 19);
  put_l4_checksum(ip, udp, udp_len, 17, 6);
}

typedef void (*frame_builder)(uint8_t *, const uint8_t *, const uint8_t *, uint32_t, uint32_t, uint16_t,
                              uint16_t);

int main(int argc, char **argv) {
  const char *ifname = NULL, *dmac_s = NULL, *smac_s = NULL, *sip_s = NULL;
  const char *dip_s = "198.51.100.10";
  long dport = 53, sport_base = 10000, flows = 1024, batch = 64, addrs = 1;
  unsigned long long count = 10000000ULL;
  double duration = 10.0, rate = 0.0;
  int opt;
  int tcp = 0, syn = 0, latency = 0;
  while ((opt = getopt(argc, argv, "i:d:s:S:D:p:P:f:A:n:t:r:b:TYLh")) != -1) {
    switch (opt) {
      case 'i': ifname = optarg; break;
      case 'd': dmac_s = optarg; break;
      case 's': smac_s = optarg; break;
      case 'S': sip_s = optarg; break;
      case 'D': dip_s = optarg; break;
      case 'p': dport = strtol(optarg, NULL, 10); break;
      case 'P': sport_base = strtol(optarg, NULL, 10); break;
      case 'f': flows = strtol(optarg, NULL, 10); break;
      case 'A': addrs = strtol(optarg, NULL, 10); break;
      case 'n': count = strtoull(optarg, NULL, 10); break;
      case 't': duration = strtod(optarg, NULL); break;
      case 'r': rate = strtod(optarg, NULL); break;
      case 'b': batch = strtol(optarg, NULL, 10); break;
      case 'T': tcp = 1; FRAME_LEN = 66; break;
      case 'Y': syn = 1; FRAME_LEN = 62; break;
      case 'L': latency = 1; break;
      default: usage();
    }
  }
  if (!ifname || !dmac_s || !sip_s) usage();
  if (tcp + syn + latency > 1) { fprintf(stderr, "gen: -T, -Y and -L exclude each other\n"); return 2; }
  if (duration <= 0 || duration > 3600) { fprintf(stderr, "gen: -t must be in (0, 3600]\n"); return 2; }
  if (count == 0) { fprintf(stderr, "gen: -n must be > 0\n"); return 2; }
  if (addrs < 1 || addrs > 65536) { fprintf(stderr, "gen: -A must be in [1, 65536]\n"); return 2; }
  const long ports_per_addr = (flows + addrs - 1) / addrs;
  if (flows < 1 || flows > MAX_FLOWS || sport_base < 1 || sport_base + ports_per_addr - 1 > 65535) {
    fprintf(stderr, "gen: flows / addresses must fit in source ports [SPORTBASE, 65535], at most %ld flows\n", MAX_FLOWS);
    return 2;
  }
  if (batch < 1 || batch > MAX_BATCH) { fprintf(stderr, "gen: -b must be in [1, %d]\n", MAX_BATCH); return 2; }
  if (dport < 1 || dport > 65535) { fprintf(stderr, "gen: bad -p\n"); return 2; }

  uint8_t dmac[6], smac[6];
  if (parse_mac(dmac_s, dmac)) { fprintf(stderr, "gen: bad -d MAC '%s'\n", dmac_s); return 2; }
  struct in_addr sip, dip;
  if (inet_pton(AF_INET, sip_s, &sip) != 1) { fprintf(stderr, "gen: bad -S '%s'\n", sip_s); return 2; }
  if (inet_pton(AF_INET, dip_s, &dip) != 1) { fprintf(stderr, "gen: bad -D '%s'\n", dip_s); return 2; }
  const uint32_t sip_host = ntohl(sip.s_addr);

  int fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only, receives nothing */
  if (fd < 0) die("socket(AF_PACKET)");
  unsigned ifindex = if_nametoindex(ifname);
  if (!ifindex) die(ifname);
  if (smac_s) {
    if (parse_mac(smac_s, smac)) { fprintf(stderr, "gen: bad -s MAC '%s'\n", smac_s); return 2; }
  } else {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
    memcpy(smac, ifr.ifr_hwaddr.sa_data, 6);
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = (int)ifindex;
  sll.sll_protocol = 0;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("bind");

  const frame_builder build = syn ? build_syn_frame : tcp ? build_tcp_frame : build_frame;
  /* Prebuilt frames for small flow counts (the pps cases: no per-frame work but the send);
   * otherwise one buffer per batch slot, built as it is sent. */
  const int prebuilt = flows <= PREBUILT_FLOWS && !latency;
  const long slots = prebuilt ? flows : MAX_BATCH;
  uint8_t *frames = malloc((size_t)slots * FRAME_LEN);
  if (!frames) die("malloc");
#define FLOW_SIP(i) htonl(sip_host + (uint32_t)((i) / ports_per_addr))
#define FLOW_SPORT(i) ((uint16_t)(sport_base + (i) % ports_per_addr))
  if (prebuilt)
    for (long i = 0; i < flows; i++)
      build(frames + i * FRAME_LEN, dmac, smac, FLOW_SIP(i), dip.s_addr, FLOW_SPORT(i), (uint16_t)dport);

  static struct mmsghdr msgs[MAX_BATCH];
  static struct iovec iovs[MAX_BATCH];

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  unsigned long long sent = 0, send_errors = 0, calls = 0;
  long next_flow = 0;
  const double t0 = now_s();
  const double t_end = t0 + duration;
  double t = t0;
  while (!stop_requested && sent < count) {
    t = now_s();
    if (t >= t_end) break;
    unsigned long long want = (unsigned long long)batch;
    if (rate > 0) {
      /* Pace: never get ahead of rate * elapsed. */
      double allowed = rate * (t - t0) - (double)sent;
      if (allowed < 1.0) {
        double wait = (1.0 - allowed) / rate;
        if (wait > 0.001) wait = 0.001;
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
        continue;
      }
      if ((double)want > allowed) want = (unsigned long long)allowed;
    }
    if (want > count - sent) want = count - sent;
    const uint64_t stamp = latency ? realtime_ns() : 0;
    for (unsigned long long k = 0; k < want; k++) {
      uint8_t *f;
      if (prebuilt) {
        f = frames + next_flow * FRAME_LEN;
      } else {
        f = frames + k * FRAME_LEN;
        build(f, dmac, smac, FLOW_SIP(next_flow), dip.s_addr, FLOW_SPORT(next_flow), (uint16_t)dport);
        if (latency) stamp_frame(f, stamp);
      }
      iovs[k].iov_base = f;
      iovs[k].iov_len = FRAME_LEN;
      msgs[k].msg_hdr.msg_iov = &iovs[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_name = NULL;
      msgs[k].msg_hdr.msg_namelen = 0;
      if (++next_flow == flows) next_flow = 0;
    }
    int n = sendmmsg(fd, msgs, (unsigned)want, 0);
    calls++;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS || errno == EAGAIN) { send_errors++; continue; }
      die("sendmmsg");
    }
    sent += (unsigned long long)n;
    /* Frames the kernel did not take are skipped, not retried: the next batch moves on. */
  }
  const double seconds = now_s() - t0;
  printf("{\"sent\":%llu,\"seconds\":%.6f,\"pps\":%.0f,\"sendErrors\":%llu,\"calls\":%llu,"
         "\"flows\":%ld,\"addresses\":%ld,\"frameBytes\":%d,\"batch\":%ld,\"rateLimit\":%.0f,\"mode\":\"%s\"}\n",
         sent, seconds, seconds > 0 ? (double)sent / seconds : 0.0, send_errors, calls, flows, addrs,
         (int)FRAME_LEN, batch, rate, syn ? "syn" : tcp ? "ack" : latency ? "udp-stamped" : "udp");
  fflush(stdout);
  free(frames);
  close(fd);
  return 0;
}
