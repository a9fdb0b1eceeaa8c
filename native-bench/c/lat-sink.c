/*
 * lat-sink: the one-way latency sink of the Sluice pps harness.
 *
 * A UDP socket bound to ADDR:PORT in the sink namespace with SO_TIMESTAMPNS: for every datagram
 * gen -L sent, the kernel's receive stamp (CLOCK_REALTIME, taken when the frame entered the
 * sink's stack) minus the send time gen wrote into the payload just before its sendmmsg. All
 * namespaces share the host's clock, so the difference is the path through the forwarder:
 * generator's send, the forwarder's capture, wake-up and send, the sink's receive. No
 * scheduling of this process is in the figure.
 *
 * Datagrams received in the first WARMUP seconds are counted but not sampled. Stops after
 * SECONDS (or on SIGINT/SIGTERM), then prints one JSON line: samples and percentiles in
 * microseconds. At most MAX_SAMPLES are kept (bounded memory); later ones are counted only.
 *
 * usage: lat-sink -a ADDR -p PORT -t SECONDS [-w WARMUP_SECONDS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAT_MAGIC 0x534c54534c545331ULL /* gen.c's "SLTSLTS1" */
#define MAX_SAMPLES (4u << 20)
#define VLEN 64

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_i64(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted samples, in microseconds. */
static double pct_us(const int64_t *s, size_t n, double p) {
  if (n == 0) return -1;
  size_t i = (size_t)(p * (double)n);
  if (i >= n) i = n - 1;
  return (double)s[i] / 1000.0;
}

int main(int argc, char **argv) {
  const char *addr_s = NULL;
  long port = 0;
  double seconds = 0, warmup = 0;
  int opt;
  while ((opt = getopt(argc, argv, "a:p:t:w:h")) != -1) {
    switch (opt) {
      case 'a': addr_s = optarg; break;
      case 'p': port = strtol(optarg, NULL, 10); break;
      case 't': seconds = strtod(optarg, NULL); break;
      case 'w': warmup = strtod(optarg, NULL); break;
      default:
        fprintf(stderr, "usage: lat-sink -a ADDR -p PORT -t SECONDS [-w WARMUP_SECONDS]\n");
        return 2;
    }
  }
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  if (!addr_s || inet_pton(AF_INET, addr_s, &sin.sin_addr) != 1 || port < 1 || port > 65535 ||
      seconds <= 0 || seconds > 600 || warmup < 0 || warmup >= seconds) {
    fprintf(stderr, "lat-sink: need -a IPv4 -p 1..65535 -t (0,600] and 0 <= -w < -t\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("lat-sink: socket"); return 1; }
  int one = 1, rcvbuf = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0) { perror("lat-sink: SO_TIMESTAMPNS"); return 1; }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) { perror("lat-sink: bind"); return 1; }

  int64_t *samples = malloc(MAX_SAMPLES * sizeof *samples);
  if (!samples) { perror("lat-sink: malloc"); return 1; }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  static uint8_t bufs[VLEN][2048];
  static char ctrl[VLEN][256];
  static struct iovec iov[VLEN];
  static struct mmsghdr msgs[VLEN];

  unsigned long long received = 0, in_warmup = 0, no_stamp = 0, foreign = 0, negative = 0, overflow = 0;
  size_t n = 0;
  fprintf(stderr, "ready\n");
  const double t0 = now_s();
  while (!stop_requested) {
    const double t = now_s();
    if (t - t0 >= seconds) break;
    struct pollfd pfd = {fd, POLLIN, 0};
    int pr = poll(&pfd, 1, 100);
    if (pr < 0 && errno != EINTR) { perror("lat-sink: poll"); break; }
    if (pr <= 0) continue;
    for (int k = 0; k < VLEN; k++) {
      iov[k].iov_base = bufs[k];
      iov[k].iov_len = sizeof bufs[k];
      memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_control = ctrl[k];
      msgs[k].msg_hdr.msg_controllen = sizeof ctrl[k];
    }
    int got = recvmmsg(fd, msgs, VLEN, MSG_DONTWAIT, NULL);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      perror("lat-sink: recvmmsg");
      break;
    }
    const int sampling = now_s() - t0 >= warmup;
    for (int k = 0; k < got; k++) {
      received++;
      if (!sampling) { in_warmup++; continue; }
      uint64_t magic, sent_ns;
      if (msgs[k].msg_len < 16) { foreign++; continue; }
      memcpy(&magic, bufs[k], 8);
      memcpy(&sent_ns, bufs[k] + 8, 8);
      if (magic != LAT_MAGIC) { foreign++; continue; }
      const struct timespec *rx = NULL;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[k].msg_hdr); c; c = CMSG_NXTHDR(&msgs[k].msg_hdr, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) rx = (const struct timespec *)CMSG_DATA(c);
      if (!rx) { no_stamp++; continue; }
      const int64_t d = (int64_t)((uint64_t)rx->tv_sec * 1000000000ULL + (uint64_t)rx->tv_nsec) - (int64_t)sent_ns;
      if (d < 0) negative++;
      if (n < MAX_SAMPLES) samples[n++] = d;
      else overflow++;
    }
  }
  qsort(samples, n, sizeof *samples, cmp_i64);
  double mean = 0;
  for (size_t i = 0; i < n; i++) mean += (double)samples[i];
  mean = n ? mean / (double)n / 1000.0 : -1;
  printf("{\"received\":%llu,\"inWarmup\":%llu,\"samples\":%zu,\"noStamp\":%llu,\"foreign\":%llu,"
         "\"negative\":%llu,\"overflow\":%llu,\"minUs\":%.2f,\"p50Us\":%.2f,\"p90Us\":%.2f,\"p99Us\":%.2f,"
         "\"p999Us\":%.2f,\"maxUs\":%.2f,\"meanUs\":%.2f,\"seconds\":%.3f}\n",
         received, in_warmup, n, no_stamp, foreign, negative, overflow, pct_us(samples, n, 0),
         pct_us(samples, n, 0.5), pct_us(samples, n, 0.9), pct_us(samples, n, 0.99), pct_us(samples, n, 0.999),
         n ? (double)samples[n - 1] / 1000.0 : -1, mean, now_s() - t0);
  fflush(stdout);
  free(samples);
  close(fd);
  return 0;
}
