// Sluice capture/transmit addon (Node-API, C).
//
// Capture: libpcap handle read through a level-triggered uv_poll. Each readable event copies at
// most batchSize frames into one shared receive area (frames + lengths, owned by JS) and makes
// ONE call into JS. It never drains the ring inside a callback: the rest waits for the next loop
// turn, so timers and other I/O keep running under overload.
//
// Transmit: an AF_PACKET SOCK_RAW socket bound to one interface with protocol 0 (send-only: it
// receives nothing). flush(count) sends slots 0..count-1 with sendmmsg. The socket is blocking
// with a short SO_SNDTIMEO: a full socket buffer back-pressures the loop for at most that long,
// after which the rest of the batch is dropped and counted as errors.
// With txRing the slots are the frames of a mapped PACKET_TX_RING instead (sluice_tx_ring.c):
// `frames` (JS-owned) only holds slots whose ring frame the kernel still held, self.frames is an
// external Buffer over the ring, flush is one send() kick, and sendOne goes
// through a second, plain socket (every send on a socket with a TX ring reads the ring, never
// the message). qdiscBypass sets PACKET_QDISC_BYPASS on the sockets of either path.
//
// Nothing here allocates per packet; nothing calls JS per packet.

#include <node_api.h>
#include "sluice_napi.h"
#include "sluice_polled.h"
#include <uv.h>
#include <pcap/pcap.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netpacket/packet.h>

#include "sluice_host.h"
#include "sluice_tx_ring.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif

#define TRUNCATED_BIT 0x80000000u
#define MAX_BATCH 65536u
#define MAX_SLOT (256u * 1024u)

// ---------------------------------------------------------------------------------------------
// helpers

// frames: a Buffer/Uint8Array of at least batch*slot bytes; lengths: a Uint32Array of >= batch.
static bool get_areas(napi_env env, napi_value frames, napi_value lengths, uint32_t batch,
                      uint32_t slot, uint8_t** fp, uint32_t** lp) {
  size_t n = 0;
  void* data = NULL;
  if (!get_typed_area(env, frames, napi_uint8_array, &n, &data)) {
    throw_code(env, "EINVAL", "frames must be a Buffer");
    return false;
  }
  if (n < (size_t)batch * slot) {
    throw_code(env, "EINVAL", "frames holds %zu bytes, needs batchSize*slotSize = %zu", n,
               (size_t)batch * slot);
    return false;
  }
  *fp = (uint8_t*)data;
  if (!get_typed_area(env, lengths, napi_uint32_array, &n, &data) || n < batch) {
    throw_code(env, "EINVAL", "lengths must be a Uint32Array of at least batchSize entries");
    return false;
  }
  *lp = (uint32_t*)data;
  return true;
}

// ---------------------------------------------------------------------------------------------
// capture

typedef struct capture_s {
  polled_t p;  // first: the wrapped pointer is both (sluice_polled.h)
  pcap_t* pcap;
  uint8_t* frames;
  uint32_t* lengths;
  uint32_t batch;
  uint32_t slot;
  uint32_t count;
  napi_ref frames_ref;
  napi_ref lengths_ref;
} capture_t;

static void capture_read(polled_t* p, int status);

static void capture_close_io(polled_t* p) {
  capture_t* c = (capture_t*)p;
  if (c->pcap != NULL) {
    pcap_close(c->pcap);
    c->pcap = NULL;
  }
}

static void capture_free(polled_t* p) { free(p); }

static const polled_ops_t capture_ops = {capture_read, capture_close_io, capture_free, "capture", "Capture",
                                         "SluiceCapture", "EPCAP"};

static void capture_finalize(napi_env env, void* data, void* hint) {
  capture_t* c = (capture_t*)data;
  delete_ref(env, &c->frames_ref);
  delete_ref(env, &c->lengths_ref);
  polled_finalize(&c->p, env);
}

static void copy_frame(u_char* user, const struct pcap_pkthdr* hdr, const u_char* bytes) {
  capture_t* c = (capture_t*)user;
  uint32_t i = c->count;
  if (i >= c->batch) return;  // pcap_dispatch(cnt = batch) never gets here
  uint32_t len = hdr->caplen;
  uint32_t flag = hdr->caplen < hdr->len ? TRUNCATED_BIT : 0;
  if (len > c->slot) {
    len = c->slot;
    flag = TRUNCATED_BIT;
  }
  memcpy(c->frames + (size_t)i * c->slot, bytes, len);
  c->lengths[i] = len | flag;
  c->count = i + 1;
}

static void capture_read(polled_t* p, int status) {
  capture_t* c = (capture_t*)p;
  char failure[PCAP_ERRBUF_SIZE + 128];
  const char* fail = NULL;
  c->count = 0;
  // At most one batch per loop turn: the poll is level-triggered, so frames left in the ring
  // come back on the next turn, after timers and other I/O had their chance.
  int n = pcap_dispatch(c->pcap, (int)c->batch, copy_frame, (u_char*)c);
  if (n == PCAP_ERROR || n == PCAP_ERROR_IFACE_NOT_UP) {
    // e.g. "The interface went down" / "The interface disappeared".
    snprintf(failure, sizeof failure, "capture on %s stopped: %s", p->device, pcap_geterr(c->pcap));
    fail = failure;
  } else if (status < 0) {
    // libuv reports POLLERR as UV_EBADF and stops the poll. libpcap consumed and judged the
    // socket error above and found it harmless (say, a down/up flap): resume.
    int r = polled_resume(p);
    if (r != 0) {
      snprintf(failure, sizeof failure, "capture on %s stopped: cannot resume polling: %s", p->device,
               uv_strerror(r));
      fail = failure;
    }
  }
  if (fail != NULL) {
    // A persistent error would make a level-triggered poll spin: stop and tell JS.
    polled_stop(p);
  }
  if (c->count > 0 || fail != NULL) polled_deliver(p, c->count, fail);
}

static napi_value capture_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  NAPI_OR_RETURN(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL), NULL);
  if (argc < 3) {
    throw_code(env, "EINVAL", "Capture(options, frames, lengths) needs 3 arguments");
    return NULL;
  }
  napi_value opts = argv[0];
  napi_value v;
  char device[IF_NAMESIZE + 1];
  char filter[8192];
  NAPI_OR_RETURN(env, napi_get_named_property(env, opts, "device", &v), NULL);
  if (!get_string(env, v, device, sizeof device, "device")) return NULL;
  NAPI_OR_RETURN(env, napi_get_named_property(env, opts, "filter", &v), NULL);
  if (!get_string(env, v, filter, sizeof filter, "filter")) return NULL;
  uint32_t batch, slot, snaplen, buffer_bytes, timeout_ms, direction;
  bool immediate, promisc;
  if (!get_opt_u32(env, opts, "batchSize", 256, &batch) || !get_opt_u32(env, opts, "slotSize", 10240, &slot) ||
      !get_opt_u32(env, opts, "snaplen", 0, &snaplen) ||
      !get_opt_u32(env, opts, "bufferBytes", 32u << 20, &buffer_bytes) ||
      !get_opt_u32(env, opts, "timeoutMs", 2, &timeout_ms) || !get_opt_u32(env, opts, "direction", 0, &direction) ||
      !get_opt_bool(env, opts, "immediate", true, &immediate) ||
      !get_opt_bool(env, opts, "promisc", false, &promisc))
    return NULL;
  if (batch == 0 || batch > MAX_BATCH || slot < 64 || slot > MAX_SLOT) {
    throw_code(env, "EINVAL", "batchSize must be 1..%u and slotSize 64..%u", MAX_BATCH, MAX_SLOT);
    return NULL;
  }
  if (snaplen == 0) snaplen = slot;
  uint8_t* frames;
  uint32_t* lengths;
  if (!get_areas(env, argv[1], argv[2], batch, slot, &frames, &lengths)) return NULL;

  char errbuf[PCAP_ERRBUF_SIZE];
  errbuf[0] = 0;
  pcap_t* p = pcap_create(device, errbuf);
  if (p == NULL) {
    throw_code(env, "EPCAP", "pcap_create(%s) failed: %s", device, errbuf);
    return NULL;
  }
  pcap_set_snaplen(p, (int)snaplen);
  pcap_set_promisc(p, promisc ? 1 : 0);
  pcap_set_buffer_size(p, buffer_bytes > 0x7fffffffu ? 0x7fffffff : (int)buffer_bytes);
  pcap_set_immediate_mode(p, immediate ? 1 : 0);
  if (!immediate) pcap_set_timeout(p, (int)timeout_ms);
  int rc = pcap_activate(p);
  if (rc < 0) {
    const char* detail = pcap_geterr(p);
    switch (rc) {
      case PCAP_ERROR_NO_SUCH_DEVICE:
        throw_code(env, "ENODEV",
                   "no such device \"%s\" (%s): check the name with `ip link` and that this process "
                   "runs in the interface's network namespace",
                   device, detail);
        break;
      case PCAP_ERROR_PERM_DENIED:
      case PCAP_ERROR_PROMISC_PERM_DENIED:
        throw_code(env, "EPERM",
                   "permission denied capturing on \"%s\" (%s): are you root / do you have "
                   "CAP_NET_RAW?",
                   device, detail);
        break;
      case PCAP_ERROR_IFACE_NOT_UP:
        throw_code(env, "ENETDOWN", "interface \"%s\" is down: bring it up with `ip link set %s up`", device,
                   device);
        break;
      default:
        throw_code(env, "EPCAP", "pcap_activate(%s) failed: %s: %s", device, pcap_statustostr(rc), detail);
    }
    pcap_close(p);
    return NULL;
  }
  char warning[PCAP_ERRBUF_SIZE + 64];
  warning[0] = 0;
  if (rc > 0) snprintf(warning, sizeof warning, "%s: %s", pcap_statustostr(rc), pcap_geterr(p));

  int dlt = pcap_datalink(p);
  if (dlt != DLT_EN10MB) {
    const char* name = pcap_datalink_val_to_name(dlt);
    throw_code(env, "ELINKTYPE", "device \"%s\" has link type %s (%d); Sluice needs Ethernet (EN10MB)", device,
               name ? name : "?", dlt);
    pcap_close(p);
    return NULL;
  }
  pcap_direction_t dir = direction == 1 ? PCAP_D_INOUT : direction == 2 ? PCAP_D_OUT : PCAP_D_IN;
  if (pcap_setdirection(p, dir) != 0) {
    throw_code(env, "EPCAP", "pcap_setdirection on \"%s\" failed: %s", device, pcap_geterr(p));
    pcap_close(p);
    return NULL;
  }
  struct bpf_program prog;
  if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
    throw_code(env, "EFILTER", "bad capture filter \"%s\": %s", filter, pcap_geterr(p));
    pcap_close(p);
    return NULL;
  }
  rc = pcap_setfilter(p, &prog);
  pcap_freecode(&prog);
  if (rc != 0) {
    throw_code(env, "EFILTER", "cannot install capture filter \"%s\" on \"%s\": %s", filter, device,
               pcap_geterr(p));
    pcap_close(p);
    return NULL;
  }
  if (pcap_setnonblock(p, 1, errbuf) != 0) {
    throw_code(env, "EPCAP", "pcap_setnonblock on \"%s\" failed: %s", device, errbuf);
    pcap_close(p);
    return NULL;
  }
  int fd = pcap_get_selectable_fd(p);
  if (fd < 0) {
    throw_code(env, "EPCAP", "no selectable fd for \"%s\"", device);
    pcap_close(p);
    return NULL;
  }
  if (dir == PCAP_D_IN) {
    // Best effort (Linux >= 4.20): keep our own transmitted frames out of the ring altogether
    // instead of copying them in and skipping them in libpcap.
    int one = 1;
    (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  }

  capture_t* c = (capture_t*)calloc(1, sizeof *c);
  if (c == NULL) {
    pcap_close(p);
    throw_code(env, "ENOMEM", "out of memory");
    return NULL;
  }
  polled_init(&c->p, &capture_ops, env, fd, device);
  c->pcap = p;
  c->frames = frames;
  c->lengths = lengths;
  c->batch = batch;
  c->slot = slot;
  if (!polled_wrap(&c->p, env, self, capture_finalize, argv[1], &c->frames_ref, argv[2], &c->lengths_ref)) {
    pcap_close(p);
    free(c);
    return NULL;
  }
  napi_value w;
  if (warning[0]) {
    napi_create_string_utf8(env, warning, NAPI_AUTO_LENGTH, &w);
  } else {
    napi_get_null(env, &w);
  }
  napi_set_named_property(env, self, "warning", w);
  return self;
}

static capture_t* capture_this(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv,
                               bool must_be_open) {
  return (capture_t*)polled_this(env, info, &capture_ops, argc, argv, NULL, must_be_open);
}

static napi_value capture_start(napi_env env, napi_callback_info info) { return polled_start(env, info, &capture_ops); }

static napi_value capture_set_filter(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  capture_t* c = capture_this(env, info, &argc, argv, true);
  if (c == NULL) return NULL;
  char filter[8192];
  if (argc < 1 || !get_string(env, argv[0], filter, sizeof filter, "filter")) return NULL;
  struct bpf_program prog;
  if (pcap_compile(c->pcap, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
    throw_code(env, "EFILTER", "bad capture filter \"%s\": %s (the previous filter stays active)", filter,
               pcap_geterr(c->pcap));
    return NULL;
  }
  int rc = pcap_setfilter(c->pcap, &prog);
  pcap_freecode(&prog);
  if (rc != 0) {
    throw_code(env, "EFILTER", "cannot install capture filter \"%s\": %s", filter, pcap_geterr(c->pcap));
  }
  return NULL;
}

static napi_value capture_stats(napi_env env, napi_callback_info info) {
  capture_t* c = capture_this(env, info, NULL, NULL, true);
  if (c == NULL) return NULL;
  struct pcap_stat st;
  memset(&st, 0, sizeof st);
  if (pcap_stats(c->pcap, &st) != 0) {
    throw_code(env, "EPCAP", "pcap_stats on \"%s\" failed: %s", c->p.device, pcap_geterr(c->pcap));
    return NULL;
  }
  napi_value out;
  NAPI_OR_RETURN(env, napi_create_object(env, &out), NULL);
  set_number(env, out, "received", st.ps_recv);
  set_number(env, out, "dropped", st.ps_drop);
  set_number(env, out, "ifDropped", st.ps_ifdrop);
  set_number(env, out, "callbackErrors", c->p.callback_errors);
  return out;
}

static napi_value capture_take_error(napi_env env, napi_callback_info info) {
  return polled_take_error(env, info, &capture_ops);
}

static napi_value capture_close(napi_env env, napi_callback_info info) { return polled_close(env, info, &capture_ops); }

// ---------------------------------------------------------------------------------------------
// interface info

typedef struct {
  int index;
  int mtu;
  int hwtype;
  uint8_t mac[6];
} ifinfo_t;

// Returns 0 or an errno; uses an ordinary datagram socket, so it needs no privileges.
static int query_interface(const char* name, ifinfo_t* out) {
  if (strlen(name) >= IFNAMSIZ || name[0] == 0) return EINVAL;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  struct ifreq ifr;
  int err = 0;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name));
  if (ioctl(s, SIOCGIFINDEX, &ifr) != 0) {
    err = errno;
    goto done;
  }
  out->index = ifr.ifr_ifindex;
  if (ioctl(s, SIOCGIFHWADDR, &ifr) != 0) {
    err = errno;
    goto done;
  }
  out->hwtype = ifr.ifr_hwaddr.sa_family;
  memcpy(out->mac, ifr.ifr_hwaddr.sa_data, 6);
  if (ioctl(s, SIOCGIFMTU, &ifr) != 0) {
    err = errno;
    goto done;
  }
  out->mtu = ifr.ifr_mtu;
done:
  close(s);
  return err;
}

static bool throw_if_error(napi_env env, const char* name, int err) {
  if (err == 0) return false;
  if (err == ENODEV || err == ENXIO) {
    throw_code(env, "ENODEV",
               "no such device \"%s\": check the name with `ip link` and that this process runs in the "
               "interface's network namespace",
               name);
  } else if (err == EINVAL) {
    throw_code(env, "EINVAL", "invalid interface name \"%s\" (1..%d bytes)", name, IFNAMSIZ - 1);
  } else {
    throw_code(env, "EIO", "cannot query interface \"%s\": %s", name, strerror(err));
  }
  return true;
}

static napi_value info_object(napi_env env, const ifinfo_t* ii) {
  napi_value out, mac;
  void* data;
  napi_create_object(env, &out);
  set_number(env, out, "index", ii->index);
  set_number(env, out, "mtu", ii->mtu);
  set_number(env, out, "hwType", ii->hwtype);
  napi_create_buffer_copy(env, 6, ii->mac, &data, &mac);
  napi_set_named_property(env, out, "mac", mac);
  return out;
}

static napi_value interface_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OR_RETURN(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), NULL);
  char name[64];
  if (argc < 1 || !get_string(env, argv[0], name, sizeof name, "interface name")) return NULL;
  ifinfo_t ii;
  memset(&ii, 0, sizeof ii);
  if (throw_if_error(env, name, query_interface(name, &ii))) return NULL;
  return info_object(env, &ii);
}

// ---------------------------------------------------------------------------------------------
// transmit

typedef struct {
  int fd;
  bool closed;
  uint8_t* frames;
  uint32_t* lengths;
  uint32_t batch;
  uint32_t slot;
  struct mmsghdr* msgs;
  struct iovec* iov;
  double sent;
  double errors;
  int last_errno;
  napi_ref frames_ref;
  napi_ref lengths_ref;
  napi_env env;
  // txRing only: the ring, sendOne's plain socket, where head/window are published to JS
  // (cursor[0] = head frame, cursor[1] = window), and the references that keep this struct
  // (the JS wrapper, the external Buffer over the ring) so the mapping outlives neither.
  bool use_ring;
  tx_ring_t ring;
  int plain_fd;
  uint32_t* cursor;
  napi_ref cursor_ref;
  int refs;
  char device[IF_NAMESIZE + 1];
} tx_t;

static void tx_close_native(tx_t* t) {
  if (t->closed) return;
  t->closed = true;
  if (t->fd >= 0) close(t->fd);
  t->fd = -1;
  if (t->plain_fd >= 0) close(t->plain_fd);
  t->plain_fd = -1;
}

static void tx_cleanup_hook(void* arg) { tx_close_native((tx_t*)arg); }

static void tx_unref(tx_t* t) {
  if (--t->refs > 0) return;
  if (t->use_ring) tx_ring_release(&t->ring);
  free(t->msgs);
  free(t->iov);
  free(t);
}

static void tx_finalize(napi_env env, void* data, void* hint) {
  tx_t* t = (tx_t*)data;
  if (!t->closed) napi_remove_env_cleanup_hook(env, tx_cleanup_hook, t);
  tx_close_native(t);
  delete_ref(env, &t->frames_ref);
  delete_ref(env, &t->lengths_ref);
  delete_ref(env, &t->cursor_ref);
  tx_unref(t);
}

static void tx_ring_buffer_finalize(napi_env env, void* data, void* hint) { tx_unref((tx_t*)hint); }

// A send-only packet socket on ifindex: protocol 0 (never hooked into receive), blocking with
// SO_SNDTIMEO, SO_SNDBUF(FORCE), PACKET_QDISC_BYPASS when asked. With ring != NULL the TX ring
// is set up before bind. Returns the fd, or -1 having thrown.
static int tx_socket(napi_env env, const char* device, int ifindex, uint32_t timeout_ms, uint32_t sndbuf,
                     bool bypass, tx_ring_t* ring, uint32_t batch, uint32_t slot, uint32_t mtu) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    if (e == EPERM || e == EACCES) {
      throw_code(env, "EPERM",
                 "cannot open a packet socket for \"%s\": %s: are you root / do you have CAP_NET_RAW?", device,
                 strerror(e));
    } else {
      throw_code(env, "EIO", "cannot open a packet socket for \"%s\": %s", device, strerror(e));
    }
    return -1;
  }
  struct timeval tv;
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  if (timeout_ms == 0) tv.tv_usec = 1;  // 0 would mean "block forever"
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (sndbuf > 0) {
    int b = sndbuf > 0x7fffffffu ? 0x7fffffff : (int)sndbuf;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &b, sizeof b) != 0)
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof b);
  }
  if (bypass) {
    // Frames go straight to the driver's queue: no qdisc, so no queueing and no back-pressure
    // from it (a busy device drops).
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0) {
      int e = errno;
      close(fd);
      throw_code(env, "EIO", "PACKET_QDISC_BYPASS on \"%s\" failed: %s", device, strerror(e));
      return -1;
    }
  }
  if (ring != NULL) {
    const char* step = "";
    int e = tx_ring_open(ring, fd, batch, slot, device, mtu, &step);
    if (e != 0) {
      tx_ring_release(ring);
      close(fd);
      throw_code(env, e == ENOMEM ? "ENOMEM" : "EIO", "%s on \"%s\" failed: %s (a ring of %u frames of %u bytes)",
                 step, device, strerror(e), batch, slot);
      return -1;
    }
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = 0;
  sll.sll_ifindex = ifindex;
  if (bind(fd, (struct sockaddr*)&sll, sizeof sll) != 0) {
    int e = errno;
    if (ring != NULL) tx_ring_release(ring);
    close(fd);
    throw_code(env, "EIO", "cannot bind a packet socket to \"%s\": %s", device, strerror(e));
    return -1;
  }
  return fd;
}

static napi_value tx_new(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self, v;
  NAPI_OR_RETURN(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL), NULL);
  if (argc < 3) {
    throw_code(env, "EINVAL", "Tx(options, frames, lengths[, cursor]) needs 3 arguments");
    return NULL;
  }
  char device[64];
  NAPI_OR_RETURN(env, napi_get_named_property(env, argv[0], "device", &v), NULL);
  if (!get_string(env, v, device, sizeof device, "device")) return NULL;
  uint32_t batch, slot, timeout_ms, sndbuf;
  bool use_ring, bypass;
  if (!get_opt_u32(env, argv[0], "batchSize", 256, &batch) || !get_opt_u32(env, argv[0], "slotSize", 10240, &slot) ||
      !get_opt_u32(env, argv[0], "sendTimeoutMs", 2, &timeout_ms) ||
      !get_opt_u32(env, argv[0], "sendBufferBytes", 4u << 20, &sndbuf) ||
      !get_opt_bool(env, argv[0], "txRing", false, &use_ring) ||
      !get_opt_bool(env, argv[0], "qdiscBypass", false, &bypass))
    return NULL;
  if (batch == 0 || batch > MAX_BATCH || slot < 64 || slot > MAX_SLOT) {
    throw_code(env, "EINVAL", "batchSize must be 1..%u and slotSize 64..%u", MAX_BATCH, MAX_SLOT);
    return NULL;
  }
  uint8_t* frames = NULL;
  uint32_t* lengths = NULL;
  uint32_t* cursor = NULL;
  size_t n = 0;
  void* data = NULL;
  if (!get_areas(env, argv[1], argv[2], batch, slot, &frames, &lengths)) return NULL;
  if (use_ring) {
    // The ring is where frames go; `frames` is the spill area (a slot whose ring frame the
    // kernel still holds is written there), plus the cursor JS aims its slot views with.
    if (argc < 4 || !get_typed_area(env, argv[3], napi_uint32_array, &n, &data) || n < 2) {
      throw_code(env, "EINVAL", "txRing needs a cursor: a Uint32Array of 2 entries");
      return NULL;
    }
    cursor = (uint32_t*)data;
  }
  ifinfo_t ii;
  memset(&ii, 0, sizeof ii);
  if (throw_if_error(env, device, query_interface(device, &ii))) return NULL;

  tx_t* t = (tx_t*)calloc(1, sizeof *t);
  struct mmsghdr* msgs = use_ring ? NULL : (struct mmsghdr*)calloc(batch, sizeof *msgs);
  struct iovec* iov = use_ring ? NULL : (struct iovec*)calloc(batch, sizeof *iov);
  if (t == NULL || (!use_ring && (msgs == NULL || iov == NULL))) {
    free(t);
    free(msgs);
    free(iov);
    throw_code(env, "ENOMEM", "out of memory");
    return NULL;
  }
  t->plain_fd = -1;
  int fd = tx_socket(env, device, ii.index, timeout_ms, sndbuf, bypass, use_ring ? &t->ring : NULL, batch, slot,
                     (uint32_t)ii.mtu);
  int plain_fd = -1;
  if (fd >= 0 && use_ring) {
    plain_fd = tx_socket(env, device, ii.index, timeout_ms, 256u << 10, bypass, NULL, 1, slot, (uint32_t)ii.mtu);
    if (plain_fd < 0) {
      tx_ring_release(&t->ring);
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) {
    free(t);
    free(msgs);
    free(iov);
    return NULL;
  }
  for (uint32_t i = 0; !use_ring && i < batch; i++) {
    iov[i].iov_base = frames + (size_t)i * slot;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  t->fd = fd;
  t->plain_fd = plain_fd;
  t->use_ring = use_ring;
  t->frames = frames;
  t->lengths = lengths;
  t->cursor = cursor;
  t->batch = batch;
  t->slot = slot;
  t->msgs = msgs;
  t->iov = iov;
  t->env = env;
  t->refs = 1;
  snprintf(t->device, sizeof t->device, "%s", device);
  napi_create_reference(env, argv[1], 1, &t->frames_ref);
  napi_create_reference(env, argv[2], 1, &t->lengths_ref);
  if (use_ring) napi_create_reference(env, argv[3], 1, &t->cursor_ref);
  if (napi_wrap(env, self, t, tx_finalize, NULL, NULL) != napi_ok) {
    t->closed = true;
    close(fd);
    if (plain_fd >= 0) close(plain_fd);
    delete_ref(env, &t->frames_ref);
    delete_ref(env, &t->lengths_ref);
    delete_ref(env, &t->cursor_ref);
    if (use_ring) tx_ring_release(&t->ring);
    free(msgs);
    free(iov);
    free(t);
    throw_code(env, "ENAPI", "napi_wrap failed");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, tx_cleanup_hook, t);
  set_number(env, self, "ifindex", ii.index);
  set_number(env, self, "mtu", ii.mtu);
  napi_value mac;
  napi_create_buffer_copy(env, 6, ii.mac, &data, &mac);
  napi_set_named_property(env, self, "mac", mac);
  if (use_ring) {
    const tx_ring_t* r = &t->ring;
    cursor[0] = r->head;
    cursor[1] = r->window;
    // The whole mapping as one external Buffer; frame j's data starts at slotOffsets[j].
    napi_value ringbuf, offs, ab, layout;
    void* od = NULL;
    if (napi_create_external_buffer(env, r->map_len, r->map, tx_ring_buffer_finalize, t, &ringbuf) != napi_ok) {
      throw_code(env, "ENAPI", "cannot create a Buffer over the transmit ring");
      return NULL;
    }
    t->refs++;
    napi_set_named_property(env, self, "frames", ringbuf);
    NAPI_OR_RETURN(env, napi_create_arraybuffer(env, (size_t)r->frame_nr * 4, &od, &ab), NULL);
    memcpy(od, r->data_off, (size_t)r->frame_nr * 4);
    NAPI_OR_RETURN(env, napi_create_typedarray(env, napi_uint32_array, r->frame_nr, ab, 0, &offs), NULL);
    napi_set_named_property(env, self, "slotOffsets", offs);
    napi_create_object(env, &layout);
    set_number(env, layout, "frames", r->frame_nr);
    set_number(env, layout, "frameBytes", r->frame_size);
    set_number(env, layout, "framesPerBlock", r->frames_per_block);
    set_number(env, layout, "blockBytes", r->block_size);
    set_number(env, layout, "blocks", r->block_nr);
    set_number(env, layout, "mappedBytes", (double)r->map_len);
    napi_set_named_property(env, self, "ring", layout);
  }
  return self;
}

static tx_t* tx_this(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv, bool must_be_open) {
  napi_value self;
  size_t dummy = 0;
  if (napi_get_cb_info(env, info, argc ? argc : &dummy, argv, &self, NULL) != napi_ok) return NULL;
  tx_t* t = NULL;
  if (napi_unwrap(env, self, (void**)&t) != napi_ok || t == NULL) {
    throw_code(env, "EINVAL", "not a Tx");
    return NULL;
  }
  if (must_be_open && t->closed) {
    throw_code(env, "ECLOSED", "transmit socket on \"%s\" is closed", t->device);
    return NULL;
  }
  return t;
}

static inline bool slot_len_ok(const tx_t* t, uint32_t len) { return len >= 14 && len <= t->slot; }

// Sends slots [0, count). Returns frames handed to the kernel; every other frame is an error.
static uint32_t tx_send_batch(tx_t* t, uint32_t count) {
  uint32_t i = 0, sent = 0;
  while (i < count) {
    if (!slot_len_ok(t, t->lengths[i])) {
      t->errors += 1;
      t->last_errno = EMSGSIZE;
      i++;
      continue;
    }
    uint32_t end = i;
    while (end < count && slot_len_ok(t, t->lengths[end])) {
      t->iov[end].iov_len = t->lengths[end];
      end++;
    }
    uint32_t eintr = 0;
    while (i < end) {
      int r = sendmmsg(t->fd, t->msgs + i, end - i, 0);
      if (r > 0) {
        sent += (uint32_t)r;
        i += (uint32_t)r;  // a partial send: retry from the first frame not sent
        continue;
      }
      int e = errno;
      if (e == EINTR && ++eintr < 8) continue;
      t->last_errno = e;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        // The socket buffer stayed full for the whole SO_SNDTIMEO: drop the rest of the batch
        // rather than stall the event loop again for each remaining frame.
        t->errors += (double)(count - i);
        t->sent += sent;
        return sent;
      }
      t->errors += 1;  // this frame was refused (ENOBUFS, EMSGSIZE, ENETDOWN, ...): skip it
      i++;
    }
  }
  t->sent += sent;
  return sent;
}

static napi_value tx_flush(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tx_t* t = tx_this(env, info, &argc, argv, true);
  if (t == NULL) return NULL;
  uint32_t count = 0;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &count) != napi_ok || count > t->batch) {
    throw_code(env, "ERANGE", "flush(count) needs 0 <= count <= batchSize (%u)", t->batch);
    return NULL;
  }
  uint32_t sent = 0;
  if (t->use_ring) {
    tx_ring_errors_t err = {t->errors, t->last_errno};
    sent = tx_ring_flush(&t->ring, t->fd, t->lengths, count, t->frames, &err);
    t->errors = err.errors;
    t->last_errno = err.last_errno;
    t->sent += sent;
    t->cursor[0] = t->ring.head;
    t->cursor[1] = t->ring.window;
  } else if (count > 0) {
    sent = tx_send_batch(t, count);
  }
  napi_value out;
  napi_create_uint32(env, sent, &out);
  return out;
}

static napi_value tx_send_one(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  tx_t* t = tx_this(env, info, &argc, argv, true);
  if (t == NULL) return NULL;
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t n = 0;
  void* data = NULL;
  uint32_t len = 0;
  if (argc >= 1) napi_is_typedarray(env, argv[0], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[0], &tt, &n, &data, NULL, NULL) != napi_ok ||
      tt != napi_uint8_array) {
    throw_code(env, "EINVAL", "sendOne(buf, len) needs a Uint8Array/Buffer");
    return NULL;
  }
  if (argc < 2 || napi_get_value_uint32(env, argv[1], &len) != napi_ok || len > n) {
    throw_code(env, "ERANGE", "sendOne(buf, len) needs 0 <= len <= buf.length (%zu)", n);
    return NULL;
  }
  bool ok = false;
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t r = send(t->use_ring ? t->plain_fd : t->fd, data, len, 0);
    if (r >= 0) {
      ok = true;
      break;
    }
    if (errno != EINTR) {
      t->last_errno = errno;
      break;
    }
  }
  if (ok) {
    t->sent += 1;
  } else {
    t->errors += 1;
  }
  napi_value out;
  napi_get_boolean(env, ok, &out);
  return out;
}

static napi_value tx_counters(napi_env env, napi_callback_info info) {
  tx_t* t = tx_this(env, info, NULL, NULL, false);
  if (t == NULL) return NULL;
  napi_value out, v;
  napi_create_object(env, &out);
  set_number(env, out, "sent", t->sent);
  set_number(env, out, "errors", t->errors);
  if (t->last_errno != 0) {
    napi_create_string_utf8(env, strerror(t->last_errno), NAPI_AUTO_LENGTH, &v);
  } else {
    napi_get_null(env, &v);
  }
  napi_set_named_property(env, out, "lastError", v);
  return out;
}

static napi_value tx_sent(napi_env env, napi_callback_info info) {
  tx_t* t = tx_this(env, info, NULL, NULL, false);
  napi_value v;
  if (t == NULL) return NULL;
  napi_create_double(env, t->sent, &v);
  return v;
}

static napi_value tx_errors(napi_env env, napi_callback_info info) {
  tx_t* t = tx_this(env, info, NULL, NULL, false);
  napi_value v;
  if (t == NULL) return NULL;
  napi_create_double(env, t->errors, &v);
  return v;
}

static napi_value tx_close(napi_env env, napi_callback_info info) {
  tx_t* t = tx_this(env, info, NULL, NULL, false);
  if (t == NULL) return NULL;
  if (!t->closed) napi_remove_env_cleanup_hook(env, tx_cleanup_hook, t);
  tx_close_native(t);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// module

static napi_value version_string(napi_env env, napi_callback_info info) {
  napi_value v;
  napi_create_string_utf8(env, pcap_lib_version(), NAPI_AUTO_LENGTH, &v);
  return v;
}

NAPI_MODULE_INIT() {
  napi_value cls, fn;
  napi_property_descriptor cap_props[] = {
      {"start", NULL, capture_start, NULL, NULL, NULL, napi_default_method, NULL},
      {"setFilter", NULL, capture_set_filter, NULL, NULL, NULL, napi_default_method, NULL},
      {"stats", NULL, capture_stats, NULL, NULL, NULL, napi_default_method, NULL},
      {"takeError", NULL, capture_take_error, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, capture_close, NULL, NULL, NULL, napi_default_method, NULL},
  };
  if (napi_define_class(env, "Capture", NAPI_AUTO_LENGTH, capture_new, NULL,
                        sizeof cap_props / sizeof cap_props[0], cap_props, &cls) != napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "Capture", cls);

  napi_property_descriptor tx_props[] = {
      {"flush", NULL, tx_flush, NULL, NULL, NULL, napi_default_method, NULL},
      {"sendOne", NULL, tx_send_one, NULL, NULL, NULL, napi_default_method, NULL},
      {"counters", NULL, tx_counters, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, tx_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"sent", NULL, NULL, tx_sent, NULL, NULL, napi_default, NULL},
      {"errors", NULL, NULL, tx_errors, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_class(env, "Tx", NAPI_AUTO_LENGTH, tx_new, NULL, sizeof tx_props / sizeof tx_props[0],
                        tx_props, &cls) != napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "Tx", cls);

  napi_create_function(env, "interfaceInfo", NAPI_AUTO_LENGTH, interface_info, NULL, &fn);
  napi_set_named_property(env, exports, "interfaceInfo", fn);
  napi_create_function(env, "pcapVersion", NAPI_AUTO_LENGTH, version_string, NULL, &fn);
  napi_set_named_property(env, exports, "pcapVersion", fn);
  sluice_host_register(env, exports);
  return exports;
}
