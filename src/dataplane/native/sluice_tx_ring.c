// Sluice's mapped transmit ring: PACKET_TX_RING with TPACKET_V2 on a send-only packet socket.
//
// The ring's frames ARE the transmit slots: JS writes each output frame straight into a ring
// frame (an external Buffer over the mapping), flush marks frames 0..n-1 of the batch
// TP_STATUS_SEND_REQUEST and makes one blocking send(fd, NULL, 0, 0). The kernel copies
// nothing from user memory per frame: it builds each skb around the ring's pages.
//
// What the kernel does (net/packet/af_packet.c, tpacket_snd), and so what this file relies on:
//  - It walks the ring from ITS head, one frame at a time, as long as the frame at head says
//    SEND_REQUEST. It never skips a frame in another state. So slot 0 of every batch must be the
//    frame at the kernel's head: `head` here follows the kernel's exactly (it moves by one per
//    frame the kernel takes), and JS's slot views are re-aimed at head after every flush.
//  - A frame it takes goes SENDING and becomes AVAILABLE again (| timestamp bits) in the skb
//    destructor, which on a real NIC runs later, at TX completion. A blocking send (no
//    MSG_DONTWAIT) returns normally only after every pending frame completed; after SO_SNDTIMEO
//    it returns -1 ETIMEDOUT with frames still SENDING (the kernel's). An error return (below)
//    does not wait either. So after anything but a normal return, this file reads the frames'
//    status before handing one to JS again: never write a frame the kernel still holds.
//  - A frame it rejects (longer than MTU + 14 (+4 with an 802.1Q tag), shorter than an
//    Ethernet header, ...) is left TP_STATUS_WRONG_FORMAT and the send returns that error at
//    once, its head still on that frame (PACKET_LOSS, which would skip such frames silently,
//    is not set: every failure is counted). A frame a full qdisc dropped goes back to
//    SEND_REQUEST with -ENOBUFS, head also on it. A full socket buffer (after SO_SNDTIMEO)
//    leaves the rest SEND_REQUEST with -EAGAIN, or returns the bytes sent so far.
//  - Frames longer than the ring allows are rejected with a pr_err in the kernel log per frame;
//    so lengths are checked here first (and the MTU re-read when a frame looks too long) and
//    such frames never reach the kernel.
// A frame left out (checked here or refused by the kernel) would leave a hole at the kernel's
// head; the frames behind it move up one frame (a memmove, only on that error path).
//
// Nothing here allocates per packet; the only system call per flush is the kick.

#include "sluice_tx_ring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/if_packet.h>

// Data starts after the V2 header: TPACKET2_HDRLEN - sizeof(struct sockaddr_ll), as the kernel
// computes it for a socket without PACKET_TX_HAS_OFF.
#define TX_RING_DATA_OFFSET (TPACKET_ALIGN(sizeof(struct tpacket2_hdr)))
#define STATUS_MASK (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING | TP_STATUS_WRONG_FORMAT)
// Frames the kernel refuses one by one in one flush before the rest is dropped: each costs a
// kick and a move of the frames behind it.
#define MAX_REFUSED 16

static inline struct tpacket2_hdr* hdr_at(const tx_ring_t* r, uint32_t frame) {
  return (struct tpacket2_hdr*)(r->map + r->data_off[frame] - TX_RING_DATA_OFFSET);
}

static inline uint8_t* data_at(const tx_ring_t* r, uint32_t frame) { return r->map + r->data_off[frame]; }

static inline uint32_t status_of(const tx_ring_t* r, uint32_t frame) {
  return __atomic_load_n(&hdr_at(r, frame)->tp_status, __ATOMIC_ACQUIRE) & STATUS_MASK;
}

// Release: the frame's bytes and tp_len are visible before the kernel can see the new status.
static inline void set_status(const tx_ring_t* r, uint32_t frame, uint32_t st) {
  __atomic_store_n(&hdr_at(r, frame)->tp_status, st, __ATOMIC_RELEASE);
}

static inline uint32_t ring_index(const tx_ring_t* r, uint32_t head, uint32_t i) {
  uint32_t f = head + i;
  return f >= r->frame_nr ? f - r->frame_nr : f;
}

int tx_ring_open(tx_ring_t* r, int fd, uint32_t batch, uint32_t slot, const char* device, uint32_t mtu,
                 const char** step) {
  memset(r, 0, sizeof *r);
  r->map = MAP_FAILED;
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  uint32_t frame = (uint32_t)TPACKET_ALIGN(TX_RING_DATA_OFFSET + slot);
  // The kernel allocates each block as 2^order pages, so a block is a power-of-two number of
  // pages; pick the order (up to 16 pages) that maps the fewest bytes for `batch` frames.
  uint32_t best_block = 0, best_fpb = 0;
  size_t best_total = SIZE_MAX;
  for (uint32_t order = 0; order <= 4; order++) {
    uint32_t block = (uint32_t)page << order;
    uint32_t fpb = block / frame;
    if (fpb == 0) continue;
    size_t total = (size_t)((batch + fpb - 1) / fpb) * block;
    if (total < best_total) {
      best_total = total;
      best_block = block;
      best_fpb = fpb;
    }
  }
  if (best_fpb == 0) {
    // A slot bigger than 16 pages: one frame per block of the next power of two pages.
    uint32_t block = (uint32_t)page;
    while (block < frame) block <<= 1;
    best_block = block;
    best_fpb = 1;
  }
  r->frame_size = frame;
  r->frames_per_block = best_fpb;
  r->block_size = best_block;
  r->block_nr = (batch + best_fpb - 1) / best_fpb;
  r->frame_nr = r->block_nr * best_fpb;
  r->slot = slot;
  r->batch = batch;
  r->mtu = mtu;
  snprintf(r->device, sizeof r->device, "%s", device);
  r->data_off = (uint32_t*)calloc(r->frame_nr, sizeof *r->data_off);
  if (r->data_off == NULL) {
    *step = "allocating the ring's frame table";
    return ENOMEM;
  }
  for (uint32_t j = 0; j < r->frame_nr; j++)
    r->data_off[j] = (j / best_fpb) * best_block + (j % best_fpb) * frame + (uint32_t)TX_RING_DATA_OFFSET;

  int version = TPACKET_V2;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) {
    *step = "PACKET_VERSION (TPACKET_V2)";
    return errno;
  }
  struct tpacket_req req;
  memset(&req, 0, sizeof req);
  req.tp_block_size = r->block_size;
  req.tp_block_nr = r->block_nr;
  req.tp_frame_size = r->frame_size;
  req.tp_frame_nr = r->frame_nr;
  if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) != 0) {
    *step = "PACKET_TX_RING";
    return errno;
  }
  r->map_len = (size_t)r->block_size * r->block_nr;
  // Plain shared mapping: pages count as resident only once touched.
  void* m = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    *step = "mmap of the transmit ring";
    return errno;
  }
  r->map = (uint8_t*)m;
  r->head = 0;
  r->window = batch;
  r->window_given = batch;
  r->clean = true;
  return 0;
}

void tx_ring_release(tx_ring_t* r) {
  if (r->map != NULL && r->map != MAP_FAILED) munmap(r->map, r->map_len);
  r->map = MAP_FAILED;
  free(r->data_off);
  r->data_off = NULL;
}

// The interface's MTU now (it may have changed since the ring opened); keeps the old on failure.
static void refresh_mtu(tx_ring_t* r, int fd) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", r->device);
  if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) r->mtu = (uint32_t)ifr.ifr_mtu;
}

// What the kernel would accept: an Ethernet header, at most the slot, at most MTU + 14 (+4 for
// an 802.1Q tag, as packet_extra_vlan_len_allowed allows).
static bool frame_fits(tx_ring_t* r, int fd, const uint8_t* f, uint32_t len, bool* mtu_fresh) {
  if (len < 14 || len > r->slot) return false;
  uint32_t extra = f[12] == 0x81 && f[13] == 0x00 ? 4 : 0;
  if (len <= r->mtu + 14 + extra) return true;
  if (!*mtu_fresh) {
    *mtu_fresh = true;
    refresh_mtu(r, fd);
  }
  return len <= r->mtu + 14 + extra;
}

// Frame `at` (ring position head+at) is left out: frames at+1..w-1 move up one, keeping their
// SEND_REQUEST; the last of them is free again. Only while no send() runs on the socket.
static void close_gap(tx_ring_t* r, uint32_t head, uint32_t at, uint32_t w, uint32_t* lengths) {
  for (uint32_t k = at; k + 1 < w; k++) {
    uint32_t to = ring_index(r, head, k), from = ring_index(r, head, k + 1);
    uint32_t len = lengths[k + 1];
    memmove(data_at(r, to), data_at(r, from), len);
    hdr_at(r, to)->tp_len = len;
    lengths[k] = len;
    set_status(r, to, TP_STATUS_SEND_REQUEST);
  }
  set_status(r, ring_index(r, head, w - 1), TP_STATUS_AVAILABLE);
}

// After a kick that did not return normally: how many frames from head are AVAILABLE (ours).
static void measure_window(tx_ring_t* r) {
  uint32_t n = 0;
  while (n < r->batch && status_of(r, ring_index(r, r->head, n)) == TP_STATUS_AVAILABLE) n++;
  r->window = n;
}

uint32_t tx_ring_flush(tx_ring_t* r, int fd, uint32_t* lengths, uint32_t count, uint8_t* spill,
                       tx_ring_errors_t* err) {
  const uint32_t head = r->head;
  // Frames from head that are ours now: at least the window JS was given (only our kicks hand
  // frames to the kernel), more if the kernel completed some since.
  uint32_t avail = r->batch;
  if (!r->clean) {
    measure_window(r);
    avail = r->window;
  }
  bool mtu_fresh = false;
  uint32_t w = 0;  // frames placed for the kernel: ring positions head..head+w-1
  for (uint32_t i = 0; i < count; i++) {
    uint32_t len = lengths[i];
    // Slots past the window JS was given were written to their spill slot instead of the ring.
    uint8_t* src = i < r->window_given ? data_at(r, ring_index(r, head, i)) : spill + (size_t)i * r->slot;
    if (!frame_fits(r, fd, src, len, &mtu_fresh)) {
      err->errors += 1;
      err->last_errno = EMSGSIZE;
      continue;
    }
    if (w >= avail) {
      // The kernel still holds the ring frame this one would go into.
      err->errors += 1;
      err->last_errno = ENOBUFS;
      continue;
    }
    uint8_t* to = data_at(r, ring_index(r, head, w));
    if (to != src) memmove(to, src, len);
    hdr_at(r, ring_index(r, head, w))->tp_len = len;
    lengths[w] = len;
    w++;
  }
  for (uint32_t k = 0; k < w; k++) set_status(r, ring_index(r, head, k), TP_STATUS_SEND_REQUEST);

  uint32_t done = 0, refused = 0, eintr = 0;
  bool clean = w == 0 ? r->clean : false;
  while (done < w) {
    ssize_t rc = send(fd, NULL, 0, 0);
    int e = rc < 0 ? errno : 0;
    uint32_t before = done;
    // The kernel takes frames in ring order from head: they are a prefix, no longer requests.
    while (done < w && (status_of(r, ring_index(r, head, done)) & (TP_STATUS_SEND_REQUEST | TP_STATUS_WRONG_FORMAT)) == 0)
      done++;
    if (done == w) {
      // A normal return waited for every pending frame (ETIMEDOUT / EINTR: some still SENDING).
      clean = rc >= 0;
      if (rc < 0 && e != ETIMEDOUT && e != EINTR) err->last_errno = e;
      break;
    }
    uint32_t at = ring_index(r, head, done);
    uint32_t st = status_of(r, at);
    if (rc < 0 && e == EINTR && ++eintr < 8) continue;
    bool one_frame = st == TP_STATUS_WRONG_FORMAT ||
                     (rc < 0 && e != EAGAIN && e != EWOULDBLOCK && e != ENETDOWN && e != ENXIO && e != ENODEV &&
                      e != EINTR && e != ETIMEDOUT);
    if (one_frame && refused < MAX_REFUSED) {
      // The kernel refused this frame (wrong format, qdisc drop): count it, close the gap, go on.
      refused++;
      err->errors += 1;
      err->last_errno = e != 0 ? e : EMSGSIZE;
      if (e == EMSGSIZE) refresh_mtu(r, fd);
      close_gap(r, head, done, w, lengths);
      w--;
      continue;
    }
    if (rc >= 0 && done > before) continue;  // the socket buffer filled mid-batch: try the rest once more
    // A full socket buffer for the whole SO_SNDTIMEO, a device that went away or down: the rest
    // of the batch is dropped (as flush does with sendmmsg) rather than stall again per frame.
    err->errors += w - done;
    err->last_errno = e != 0 ? e : EAGAIN;
    for (uint32_t k = done; k < w; k++) set_status(r, ring_index(r, head, k), TP_STATUS_AVAILABLE);
    w = done;
    break;
  }
  r->head = ring_index(r, head, done);
  r->clean = clean;
  if (clean) {
    r->window = r->batch;
  } else {
    measure_window(r);
  }
  r->window_given = r->window;
  return done;
}
