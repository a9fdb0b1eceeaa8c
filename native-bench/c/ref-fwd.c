/*
 * ref-fwd: the C libpcap reference forwarder of the Sluice pps harness.
 *
 * What a minimal L2 DSR forwarder costs in C with the same capture library and settings as
 * Sluice: libpcap on the ingress interface (immediate mode, 32 MiB buffer, snaplen 10240,
 * direction IN, BPF filter "dst host VIP"), pcap_dispatch in a loop, and per packet:
 * copy, rewrite destination MAC to the backend's and source MAC to the egress interface's,
 * pcap_inject on a second handle opened on the egress interface. No flow table, no hashing:
 * this is the floor of the capture + send path, not a load balancer.
 *
 * The egress handle gets a BPF filter that accepts nothing, so the frames it sends are not
 * copied back into its own receive ring (its ring is never read).
 *
 * Stops on SIGINT/SIGTERM or after -t seconds (a safety bound), then prints one JSON line with
 * its counters to stdout. Prints "ready" to stderr once both handles are active.
 *
 * usage: ref-fwd -i INGRESS -o EGRESS -m BACKEND_MAC [-v VIP] [-B BUFFER_MIB] [-s SNAPLEN]
 *                [-t MAX_SECONDS] [-F FILTER]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME 10240

static pcap_t *in_handle = NULL;
static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
  if (in_handle) pcap_breakloop(in_handle);
}

struct fwd_state {
  pcap_t *out;
  uint8_t macs[12]; /* backend MAC, then egress MAC */
  uint8_t frame[MAX_FRAME];
  unsigned long long received, forwarded, send_errors, too_short;
};

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes) {
  struct fwd_state *st = (struct fwd_state *)user;
  st->received++;
  const uint32_t len = h->caplen;
  if (len < 14 || len != h->len || len > MAX_FRAME) { st->too_short++; return; }
  memcpy(st->frame, bytes, len);
  memcpy(st->frame, st->macs, 12);
  if (pcap_inject(st->out, st->frame, len) < 0) st->send_errors++;
  else st->forwarded++;
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

static int if_mac(const char *ifname, uint8_t mac[6]) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  int rc = ioctl(fd, SIOCGIFHWADDR, &ifr);
  close(fd);
  if (rc < 0) return -1;
  memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
  return 0;
}

static pcap_t *open_handle(const char *ifname, int snaplen, int buffer_bytes, int immediate) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t *p = pcap_create(ifname, err);
  if (!p) { fprintf(stderr, "ref-fwd: pcap_create(%s): %s\n", ifname, err); exit(1); }
  if (pcap_set_snaplen(p, snaplen) || pcap_set_promisc(p, 0) || pcap_set_timeout(p, 100) ||
      pcap_set_buffer_size(p, buffer_bytes) || pcap_set_immediate_mode(p, immediate)) {
    fprintf(stderr, "ref-fwd: setting options on %s failed\n", ifname);
    exit(1);
  }
  int rc = pcap_activate(p);
  if (rc < 0) { fprintf(stderr, "ref-fwd: pcap_activate(%s): %s\n", ifname, pcap_geterr(p)); exit(1); }
  if (rc > 0) fprintf(stderr, "ref-fwd: pcap_activate(%s) warning: %s\n", ifname, pcap_geterr(p));
  return p;
}

static void set_filter(pcap_t *p, const char *expr) {
  struct bpf_program prog;
  if (pcap_compile(p, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) < 0 || pcap_setfilter(p, &prog) < 0) {
    fprintf(stderr, "ref-fwd: filter '%s': %s\n", expr, pcap_geterr(p));
    exit(1);
  }
  pcap_freecode(&prog);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  const char *in_if = NULL, *out_if = NULL, *mac_s = NULL, *vip = "198.51.100.10";
  const char *filter_override = NULL;
  int buffer_mib = 32, snaplen = 10240;
  double max_seconds = 600;
  int opt;
  while ((opt = getopt(argc, argv, "i:o:m:v:B:s:t:F:h")) != -1) {
    switch (opt) {
      case 'i': in_if = optarg; break;
      case 'o': out_if = optarg; break;
      case 'm': mac_s = optarg; break;
      case 'v': vip = optarg; break;
      case 'B': buffer_mib = atoi(optarg); break;
      case 's': snaplen = atoi(optarg); break;
      case 't': max_seconds = strtod(optarg, NULL); break;
      case 'F': filter_override = optarg; break;
      default:
        fprintf(stderr, "usage: ref-fwd -i INGRESS -o EGRESS -m BACKEND_MAC [-v VIP] [-B MIB=32]"
                        " [-s SNAPLEN=10240] [-t MAX_SECONDS=600] [-F FILTER]\n");
        return 2;
    }
  }
  if (!in_if || !out_if || !mac_s) { fprintf(stderr, "ref-fwd: -i, -o and -m are required\n"); return 2; }
  if (snaplen < 64 || snaplen > MAX_FRAME) { fprintf(stderr, "ref-fwd: -s must be in [64, %d]\n", MAX_FRAME); return 2; }
  if (buffer_mib < 1 || buffer_mib > 1024) { fprintf(stderr, "ref-fwd: -B must be in [1, 1024]\n"); return 2; }
  if (max_seconds <= 0) { fprintf(stderr, "ref-fwd: -t must be > 0\n"); return 2; }

  static struct fwd_state st;
  if (parse_mac(mac_s, st.macs)) { fprintf(stderr, "ref-fwd: bad -m MAC '%s'\n", mac_s); return 2; }
  if (if_mac(out_if, st.macs + 6)) { fprintf(stderr, "ref-fwd: no MAC for %s: %s\n", out_if, strerror(errno)); return 1; }

  in_handle = open_handle(in_if, snaplen, buffer_mib << 20, 1);
  if (pcap_setdirection(in_handle, PCAP_D_IN) < 0) {
    fprintf(stderr, "ref-fwd: pcap_setdirection: %s\n", pcap_geterr(in_handle));
    return 1;
  }
  char filter[256];
  snprintf(filter, sizeof filter, "dst host %s", vip);
  set_filter(in_handle, filter_override ? filter_override : filter);

  if (strcmp(in_if, out_if) == 0) {
    st.out = in_handle; /* one-armed */
  } else {
    st.out = open_handle(out_if, 64, 1 << 20, 0);
    set_filter(st.out, "less 1"); /* accept nothing: sending only */
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  fprintf(stderr, "ready\n");
  const double t0 = now_s();
  const char *stopped_by = "signal";
  while (!stop_requested) {
    int n = pcap_dispatch(in_handle, -1, on_packet, (u_char *)&st);
    if (n == PCAP_ERROR) { fprintf(stderr, "ref-fwd: pcap_dispatch: %s\n", pcap_geterr(in_handle)); stopped_by = "error"; break; }
    if (now_s() - t0 >= max_seconds) { stopped_by = "time"; break; }
  }
  const double seconds = now_s() - t0;
  struct pcap_stat ps;
  memset(&ps, 0, sizeof ps);
  pcap_stats(in_handle, &ps);
  printf("{\"received\":%llu,\"forwarded\":%llu,\"sendErrors\":%llu,\"skipped\":%llu,"
         "\"pcapRecv\":%u,\"pcapDrop\":%u,\"pcapIfDrop\":%u,\"seconds\":%.3f,\"stoppedBy\":\"%s\","
         "\"snaplen\":%d,\"bufferMiB\":%d,\"libpcap\":\"%s\"}\n",
         st.received, st.forwarded, st.send_errors, st.too_short, ps.ps_recv, ps.ps_drop,
         ps.ps_ifdrop, seconds, stopped_by, snaplen, buffer_mib, pcap_lib_version());
  fflush(stdout);
  if (st.out != in_handle) pcap_close(st.out);
  pcap_close(in_handle);
  return 0;
}
