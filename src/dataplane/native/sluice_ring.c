// Sluice's AF_PACKET receive ring (Node-API, C): a TPACKET_V2 ring (default) or TPACKET_V3 ring
// on one interface.
//
// Why its own ring and not libpcap: libpcap hides the kernel's per-frame status. A frame a local
// or virtual sender left with a partial checksum (TP_STATUS_CSUMNOTREADY), a VLAN tag the kernel
// stripped (tp_vlan_tci) and a GSO super-frame (the virtio_net_hdr the kernel writes in front of
// every frame with PACKET_VNET_HDR) all look like ordinary frames through libpcap. Here each
// frame's status reaches JavaScript in a reused Uint32Array (RING_META_WORDS words per frame).
//
// Wake-ups: a level-triggered uv_poll on the socket. Each readable event reads at most batchSize
// frames, makes ONE call into JS, and hands what it read back to the kernel. Frames left over
// wait for the next loop turn, so timers and IPC keep running under overload.
//   V2 (default): fixed frame slots; the kernel wakes us per frame, so a lone frame is handed
//   over at once; under load one wake-up finds many frames ready. A frame bigger than its slot
//   is queued whole to the socket too (PACKET_COPY_THRESH) and read into `big`.
//   V3: variable-size frames packed in blocks; the kernel wakes us only when it retires a block
//   (full, or after retireMs, jiffy-granular): fewer wake-ups, but at low rates every frame
//   waits for the timeout.
//
// Frames, V2 (the default): read in place. Every ring frame slot has a fixed address and the
// kernel puts an Ethernet frame at one fixed tp_mac in it (mac_offset() below), so JS makes one
// view per ring frame at set-up (`mapped`, frame views) and the meta says which (F_IN_PLACE,
// M_RING_FRAME): no copy. Those slots go back to the kernel only after onBatch returns.
// Copied instead, into the frame's slot of `frames` (JS-owned; F_COPIED): a frame whose stripped
// VLAN tag goes back in front (it no longer fits where the kernel put it), a frame at another
// tp_mac, a TP_STATUS_COPY frame (read whole from the socket queue), and every V3 frame (V3
// frames sit at variable offsets in a block; a JS view per possible offset would be millions of
// objects and a view made per frame would allocate per packet). A frame bigger than a slot (a
// GSO super-frame, up to 64 KiB) is not copied to a slot: its meta says IN_RING and gives its
// offset in `ring`, an external Buffer (V3: over the mapped ring, read in place; V2: `big`),
// valid until onBatch returns.
//
// Partial checksums (TP_STATUS_CSUMNOTREADY, what senders with checksum offload leave) are
// completed here, in the bytes JS will read (ring frame or slot), before JS sees the batch:
// F_CSUM_COMPLETED, or F_CSUM_BAD when the offsets do not fit the frame (JS drops it). GSO
// super-frames are left as the kernel gave them: the segmenter finishes every segment's checksum.
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
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/filter.h>
#include <linux/virtio_net.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

// Per-frame meta words (keep in step with src/dataplane/ring-frame.ts).
#define META_WORDS 9
#define M_CAPLEN 0      // bytes of the frame we have (in its slot, or in the ring)
#define M_FLAGS 1       // F_* below
#define M_RING_OFF 2    // IN_RING: offset of the frame's first byte in `ring`
#define M_WIRE_LEN 3    // tp_len: the frame's length as the kernel had it
#define M_VLAN 4        // tci | tpid << 16 (VLAN_VALID)
#define M_CSUM 5        // vnet csum_start | csum_offset << 16 (VNET_NEEDS_CSUM)
#define M_GSO 6         // vnet gso_type | gso_size << 16
#define M_HDR_LEN 7     // vnet hdr_len
#define M_RING_FRAME 8  // IN_PLACE: index of the ring frame (V2 slot) that holds the frame

#define F_CSUM_NOT_READY 0x1u  // TP_STATUS_CSUMNOTREADY: the L4 checksum is partial
#define F_CSUM_VALID 0x2u      // TP_STATUS_CSUM_VALID: the device verified it
#define F_VLAN_VALID 0x4u      // the kernel stripped a tag into M_VLAN
#define F_TRUNCATED 0x8u       // tp_snaplen < tp_len
#define F_IN_RING 0x10u        // too big for a slot: read it at M_RING_OFF in `ring`
#define F_VNET 0x20u           // M_CSUM / M_GSO / M_HDR_LEN hold the kernel's virtio_net_hdr
#define F_VNET_NEEDS_CSUM 0x40u
#define F_VNET_DATA_VALID 0x80u
#define F_LOSING 0x100u        // TP_STATUS_LOSING: the ring dropped frames around this one
#define F_IN_PLACE 0x200u      // read it in ring frame M_RING_FRAME, where the kernel wrote it
#define F_COPIED 0x400u        // its bytes were copied here (to its slot, or recv() into `big`)
#define F_CSUM_COMPLETED 0x800u  // its partial L4 checksum was completed in place
#define F_CSUM_BAD 0x1000u     // partial, but csum_start/offset (or the headers) do not fit it

#define MAX_BATCH 65536u
#define MAX_SLOT (256u * 1024u)

// ---------------------------------------------------------------------------------------------
// helpers

// Reads obj[name] as a string into out (cap bytes with the NUL).
static bool get_named_string(napi_env env, napi_value obj, const char* name, char* out, size_t cap) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) {
    throw_code(env, "EINVAL", "option %s must be a string", name);
    return false;
  }
  return get_string(env, v, out, cap, name);
}

// Compiles a pcap-syntax filter to classic BPF (libpcap is only the compiler here).
static bool compile_filter(napi_env env, const char* filter, struct bpf_program* prog) {
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  if (dead == NULL) {
    throw_code(env, "ENOMEM", "pcap_open_dead failed");
    return false;
  }
  if (pcap_compile(dead, prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
    throw_code(env, "EFILTER", "bad capture filter \"%s\": %s", filter, pcap_geterr(dead));
    pcap_close(dead);
    return false;
  }
  pcap_close(dead);
  return true;
}

static int attach_filter(int fd, struct bpf_program* prog) {
  struct sock_fprog fp;
  fp.len = (unsigned short)prog->bf_len;
  fp.filter = (struct sock_filter*)prog->bf_insns;  // same layout as struct bpf_insn
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp);
}

// ---------------------------------------------------------------------------------------------
// the ring

typedef struct ring_s {
  polled_t p;  // first: the wrapped pointer is both (sluice_polled.h); refs also counts `ring`
  uint8_t* map;
  size_t map_len;
  uint32_t block_size;
  uint32_t block_count;
  uint32_t cur_block;  // next block to read
  uint32_t cur_idx;    // frames of cur_block already read
  uint32_t cur_off;    // offset in cur_block of frame cur_idx
  bool vnet;
  bool in_place;        // V2: read frames in place (0: copy every frame, to measure the difference)
  int version;          // TPACKET_V2 (one wake-up per frame) or TPACKET_V3 (per retired block)
  uint32_t frame_size;  // V2
  uint32_t frame_nr;    // V2
  uint32_t frames_per_block;  // V2
  uint32_t cur_frame;   // V2: next frame slot to read
  uint8_t* big;         // V2: a frame too big for its ring slot is read here (PACKET_COPY_THRESH)
  size_t big_len;
  uint8_t* frames;
  uint32_t* meta;
  uint32_t batch;
  uint32_t slot;
  double received;
  double dropped;
  double freezes;
  double blocks;
  napi_ref frames_ref;
  napi_ref meta_ref;
} ring_t;

static void ring_on_readable(polled_t* p, int status);

// Closes the socket. The mapping stays until the last reference goes (JS may still hold
// `ring`); the pages stay valid after close because the mapping pins them.
static void ring_close_io(polled_t* p) {
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

static void ring_free(polled_t* p) {
  ring_t* r = (ring_t*)p;
  if (r->map != NULL && r->map != MAP_FAILED) munmap(r->map, r->map_len);
  free(r->big);
  free(r);
}

static const polled_ops_t ring_ops = {ring_on_readable, ring_close_io, ring_free, "capture ring", "Ring",
                                      "SluiceRing", "EIO"};

static void ring_finalize(napi_env env, void* data, void* hint) {
  ring_t* r = (ring_t*)data;
  delete_ref(env, &r->frames_ref);
  delete_ref(env, &r->meta_ref);
  polled_finalize(&r->p, env);
}

static void map_finalize(napi_env env, void* data, void* hint) { polled_unref((polled_t*)hint); }

static inline struct tpacket_block_desc* block_at(ring_t* r, uint32_t i) {
  return (struct tpacket_block_desc*)(r->map + (size_t)i * r->block_size);
}

// TPACKET_V2: the slot of ring frame f (frames never straddle blocks).
static inline uint8_t* frame_at(ring_t* r, uint32_t f) {
  return r->map + (size_t)(f / r->frames_per_block) * r->block_size + (size_t)(f % r->frames_per_block) * r->frame_size;
}

// Where one walk puts what it reads. The ring and the test entry points (walkBlock,
// walkFramesV2) share it.
typedef struct {
  uint8_t* frames;
  uint32_t* meta;
  uint32_t slot;
  bool vnet;
  const uint8_t* base;  // IN_RING offsets are relative to this
  bool in_place;        // V2: frames at mac_offset() may be read in place (else every frame is copied)
} walk_t;

// Where tpacket_rcv (net/packet/af_packet.c) puts an Ethernet frame in a TPACKET_V2 frame slot:
// netoff = TPACKET_ALIGN(tp_hdrlen + max(maclen, 16)) + tp_reserve (+ the vnet header's size),
// macoff = netoff - maclen, with tp_hdrlen = TPACKET2_HDRLEN (52), maclen = the 14-byte Ethernet
// header (a stripped tag is not in the frame), tp_reserve 0: 66, or 76 with PACKET_VNET_HDR. A
// frame elsewhere (another maclen) is copied: the views JS holds start at this offset.
static uint32_t mac_offset(bool vnet) {
  uint32_t netoff = TPACKET_ALIGN(TPACKET2_HDRLEN + 16) + (vnet ? (uint32_t)sizeof(struct virtio_net_hdr) : 0u);
  return netoff - ETH_HLEN;
}

// What a NIC does for a frame handed to it with CHECKSUM_PARTIAL: the one's-complement sum of
// bytes [start, len) (the sender's kernel left the pseudo-header sum in the field) goes, complemented,
// at start + off. A computed 0 is written as 0xffff, as the kernel does (a UDP 0 means "none").
// False, nothing written, when the field does not fit the frame. Same result, byte for byte, as
// completePartialChecksum in src/packet/checksum.ts.
static bool complete_partial(uint8_t* f, uint32_t len, uint32_t start, uint32_t off) {
  if ((uint64_t)start + off + 2 > len) return false;
  const uint8_t* p = f + start;
  uint32_t n = len - start;
  uint64_t sum = 0;
  for (; n >= 2; p += 2, n -= 2) sum += ((uint32_t)p[0] << 8) | p[1];
  if (n) sum += (uint32_t)p[0] << 8;
  while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
  uint16_t c = (uint16_t)~sum;
  if (c == 0) c = 0xffff;
  f[start + off] = (uint8_t)(c >> 8);
  f[start + off + 1] = (uint8_t)c;
  return true;
}

// Without the kernel's virtio_net_hdr: where a partial TCP/UDP checksum starts and sits, found from
// the headers (up to two VLAN tags, then the IPv4 header by its IHL or the fixed IPv6 header).
// False for anything else (a partial checksum of another protocol, IPv6 extension headers).
static bool locate_partial(const uint8_t* b, uint32_t len, uint32_t* start, uint32_t* off) {
  uint32_t l3 = 14;
  uint32_t et = len >= 14 ? ((uint32_t)b[12] << 8) | b[13] : 0;
  for (int tags = 0; (et == ETH_P_8021Q || et == ETH_P_8021AD) && tags < 2 && l3 + 4 <= len; tags++) {
    et = ((uint32_t)b[l3 + 2] << 8) | b[l3 + 3];
    l3 += 4;
  }
  uint32_t proto;
  if (et == ETH_P_IP && l3 + 20 <= len) {
    *start = l3 + ((uint32_t)(b[l3] & 0x0f) << 2);
    proto = b[l3 + 9];
  } else if (et == ETH_P_IPV6 && l3 + 40 <= len) {
    *start = l3 + 40;
    proto = b[l3 + 6];
  } else {
    return false;
  }
  if (proto == IPPROTO_TCP) *off = 16;
  else if (proto == IPPROTO_UDP) *off = 6;
  else return false;
  return true;
}

// Fills meta for one frame the kernel gave us, and puts it where JS reads it: `frame` (snap bytes
// of a frame of len bytes), its tp_status, its stripped VLAN tag, the virtio_net_hdr in front of
// it (vnet_hdr, NULL without PACKET_VNET_HDR). ring_frame >= 0: the frame sits at mac_offset() in
// that V2 ring frame, writable, and may be read there; -1: it may not (copy it or read it in `ring`).
static void fill_frame(const walk_t* r, uint32_t i, uint8_t* frame, const uint8_t* vnet_hdr, uint32_t snap,
                       uint32_t len, uint32_t st, uint32_t vlan_tci, uint32_t vlan_tpid, int64_t ring_frame) {
  uint32_t* m = r->meta + (size_t)i * META_WORDS;
  uint32_t flags = 0;
  uint32_t tag = 0;  // 4: the stripped tag goes back in front of the frame (below)
  uint32_t csum = 0;
  if (st & TP_STATUS_CSUMNOTREADY) flags |= F_CSUM_NOT_READY;
  if (st & TP_STATUS_CSUM_VALID) flags |= F_CSUM_VALID;
  if (st & TP_STATUS_LOSING) flags |= F_LOSING;
  if (st & TP_STATUS_VLAN_VALID) {
    flags |= F_VLAN_VALID;
    uint32_t tpid = (st & TP_STATUS_VLAN_TPID_VALID) ? vlan_tpid : ETH_P_8021Q;
    m[M_VLAN] = (vlan_tci & 0xffffu) | (tpid << 16);
    if (snap >= 12 && snap + 4 <= r->slot) tag = 4;
  } else {
    m[M_VLAN] = 0;
  }
  if (snap < len) flags |= F_TRUNCATED;
  if (vnet_hdr != NULL) {
    struct virtio_net_hdr vh;
    memcpy(&vh, vnet_hdr, sizeof vh);  // host order: a packet socket uses the host's
    flags |= F_VNET;
    if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) flags |= F_VNET_NEEDS_CSUM;
    if (vh.flags & VIRTIO_NET_HDR_F_DATA_VALID) flags |= F_VNET_DATA_VALID;
    uint32_t cs = vh.csum_start;
    if ((vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && tag) cs += tag;  // it counts from the frame's first byte
    csum = cs | ((uint32_t)vh.csum_offset << 16);
    m[M_GSO] = (uint32_t)vh.gso_type | ((uint32_t)vh.gso_size << 16);
    m[M_HDR_LEN] = vh.hdr_len;
  } else {
    m[M_GSO] = 0;
    m[M_HDR_LEN] = 0;
  }
  m[M_CSUM] = csum;
  m[M_CAPLEN] = snap + tag;
  m[M_WIRE_LEN] = len + tag;
  m[M_RING_OFF] = 0;
  m[M_RING_FRAME] = 0;
  uint8_t* d = NULL;  // where JS reads the frame: its slot or its ring frame; NULL: in `ring`
  if (tag) {
    // The kernel untags 802.1Q/802.1ad frames before packet taps and reports the tag apart.
    // Put it back where it was, as libpcap does, so the forwarder's parser sees the frame as
    // it arrived (its VLAN id and policy) whatever the engine. F_VLAN_VALID stays set. No room
    // for it in front of the frame in the ring: this one is copied.
    d = r->frames + (size_t)i * r->slot;
    uint32_t tpid = m[M_VLAN] >> 16, tci = m[M_VLAN] & 0xffffu;
    memcpy(d, frame, 12);
    d[12] = (uint8_t)(tpid >> 8);
    d[13] = (uint8_t)tpid;
    d[14] = (uint8_t)(tci >> 8);
    d[15] = (uint8_t)tci;
    memcpy(d + 16, frame + 12, snap - 12);
    flags |= F_COPIED;
  } else if (ring_frame >= 0) {
    d = frame;
    flags |= F_IN_PLACE;
    m[M_RING_FRAME] = (uint32_t)ring_frame;
  } else if (snap <= r->slot) {
    d = r->frames + (size_t)i * r->slot;
    memcpy(d, frame, snap);
    flags |= F_COPIED;
  } else {
    flags |= F_IN_RING;
    m[M_RING_OFF] = r->base != NULL ? (uint32_t)(frame - r->base) : 0;
  }
  // A partial checksum the forwarder will read as it is (not a GSO super-frame, whose segments the
  // segmenter finishes; not a cut frame, which is dropped): complete it now, where JS reads it.
  if (d != NULL && (flags & (F_CSUM_NOT_READY | F_VNET_NEEDS_CSUM)) && !(flags & F_TRUNCATED) &&
      (m[M_GSO] & 0xffffu) == VIRTIO_NET_HDR_GSO_NONE) {
    uint32_t start, off;
    bool found = (flags & F_VNET_NEEDS_CSUM) ? (start = csum & 0xffffu, off = csum >> 16, true)
                                              : locate_partial(d, m[M_CAPLEN], &start, &off);
    flags |= found && complete_partial(d, m[M_CAPLEN], start, off) ? F_CSUM_COMPLETED : F_CSUM_BAD;
  }
  m[M_FLAGS] = flags;
}

// One TPACKET_V3 frame; false when it is skipped.
static bool take_frame(const walk_t* r, struct tpacket3_hdr* fh, uint32_t i) {
  uint8_t* base = (uint8_t*)fh;
  const struct sockaddr_ll* sll = (const struct sockaddr_ll*)(base + TPACKET_ALIGN(sizeof(struct tpacket3_hdr)));
  // PACKET_IGNORE_OUTGOING should keep these out; older kernels ignore the option.
  if (sll->sll_pkttype == PACKET_OUTGOING) return false;
  uint8_t* frame = base + fh->tp_mac;
  fill_frame(r, i, frame, r->vnet ? frame - sizeof(struct virtio_net_hdr) : NULL, fh->tp_snaplen, fh->tp_len,
             fh->tp_status, fh->hv1.tp_vlan_tci, fh->hv1.tp_vlan_tpid, -1);
  return true;
}

static void ring_read(ring_t* r, int status) {
  char failure[256];
  const char* fail = NULL;
  uint32_t count = 0;
  uint32_t first_done = r->cur_block;
  uint32_t done = 0;
  walk_t w = {r->frames, r->meta, r->slot, r->vnet, r->map, false};
  while (count < r->batch) {
    struct tpacket_block_desc* bd = block_at(r, r->cur_block);
    if ((__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) == 0) break;
    uint32_t n = bd->hdr.bh1.num_pkts;
    if (r->cur_idx == 0) r->cur_off = bd->hdr.bh1.offset_to_first_pkt;
    while (r->cur_idx < n && count < r->batch) {
      struct tpacket3_hdr* fh = (struct tpacket3_hdr*)((uint8_t*)bd + r->cur_off);
      if (take_frame(&w, fh, count)) count++;
      r->cur_idx++;
      r->cur_off += fh->tp_next_offset;
    }
    if (r->cur_idx < n) break;  // batch full inside this block: it stays ours until next time
    done++;
    r->blocks += 1;
    r->cur_idx = 0;
    r->cur_block = (r->cur_block + 1) % r->block_count;
    if (done == r->block_count) break;
  }
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF and stops the poll.
    int rc = polled_resume(&r->p);
    if (rc != 0) {
      snprintf(failure, sizeof failure, "capture on %s stopped: cannot resume polling: %s", r->p.device, uv_strerror(rc));
      fail = failure;
    } else {
      int err = 0;
      socklen_t el = sizeof err;
      getsockopt(r->p.fd, SOL_SOCKET, SO_ERROR, &err, &el);  // reading clears it
      if (err == ENODEV || err == ENXIO) {
        snprintf(failure, sizeof failure, "capture on %s stopped: the interface disappeared", r->p.device);
        fail = failure;
      }
    }
  }
  if (fail != NULL) {
    polled_stop(&r->p);
  }
  if (count > 0 || fail != NULL) polled_deliver(&r->p, count, fail);
  // The frames JS read in place (IN_RING) are done with: hand their blocks back.
  for (uint32_t k = 0; k < done; k++) {
    struct tpacket_block_desc* bd = block_at(r, (first_done + k) % r->block_count);
    __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  }
}

// One TPACKET_V2 frame slot at `base` (status st, ring frame `index`); false when it is skipped.
// copy_len: bytes recv() gave for its whole copy in w->base (TP_STATUS_COPY), or -1. A frame the
// kernel put at mac_offset() is read in place (unless its VLAN tag goes back in front).
static bool take_frame_v2(const walk_t* w, uint8_t* base, uint32_t st, uint32_t i, uint32_t index, ssize_t copy_len,
                          size_t copy_cap) {
  const struct tpacket2_hdr* h2 = (const struct tpacket2_hdr*)base;
  const struct sockaddr_ll* sll = (const struct sockaddr_ll*)(base + TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
  if (sll->sll_pkttype == PACKET_OUTGOING) return false;
  const size_t vnet_len = w->vnet ? sizeof(struct virtio_net_hdr) : 0;
  if (copy_len >= (ssize_t)(vnet_len + 14)) {
    size_t have = (size_t)copy_len < copy_cap ? (size_t)copy_len : copy_cap;
    uint8_t* copy = (uint8_t*)w->base;
    fill_frame(w, i, copy + vnet_len, vnet_len ? copy : NULL, (uint32_t)(have - vnet_len),
               (uint32_t)((size_t)copy_len - vnet_len), st, h2->tp_vlan_tci, h2->tp_vlan_tpid, -1);
    w->meta[(size_t)i * META_WORDS + M_FLAGS] |= F_COPIED;  // recv() copied it, into `big` or on to its slot
  } else {
    uint8_t* frame = base + h2->tp_mac;
    bool in_place = w->in_place && (st & TP_STATUS_COPY) == 0 && h2->tp_mac == mac_offset(w->vnet);
    fill_frame(w, i, frame, vnet_len ? frame - vnet_len : NULL, h2->tp_snaplen, h2->tp_len, st, h2->tp_vlan_tci,
               h2->tp_vlan_tpid, in_place ? (int64_t)index : -1);
  }
  return true;
}

// TPACKET_V2: fixed frame slots. The kernel wakes us per frame, so a lone frame waits for no
// block timeout. A frame bigger than its slot comes with TP_STATUS_COPY: its full copy waits in
// the socket's receive queue (PACKET_COPY_THRESH) and is read into `big` (at most one per batch:
// JS reads it there until onBatch returns). Every slot read here goes back to the kernel after
// onBatch returns, in ring order: JS reads and rewrites the frames it reads in place meanwhile.
static void ring_read_v2(ring_t* r, int status) {
  char failure[256];
  const char* fail = NULL;
  uint32_t count = 0;
  uint32_t first = r->cur_frame;
  uint32_t taken = 0;  // ring frames read (the skipped ones too), all ours until handed back
  bool big_used = false;
  walk_t w = {r->frames, r->meta, r->slot, r->vnet, r->big, r->in_place};
  while (count < r->batch && taken < r->frame_nr) {
    uint8_t* base = frame_at(r, r->cur_frame);
    struct tpacket2_hdr* h2 = (struct tpacket2_hdr*)base;
    uint32_t st = __atomic_load_n(&h2->tp_status, __ATOMIC_ACQUIRE);
    if ((st & TP_STATUS_USER) == 0) break;
    if ((st & TP_STATUS_COPY) && big_used) break;  // the next batch reads it
    ssize_t n = -1;
    if (st & TP_STATUS_COPY) {
      n = recv(r->p.fd, r->big, r->big_len, MSG_DONTWAIT | MSG_TRUNC);
      big_used = true;
    }
    if (take_frame_v2(&w, base, st, count, r->cur_frame, n, r->big_len)) count++;
    taken++;
    r->cur_frame = (r->cur_frame + 1) % r->frame_nr;
  }
  if (status < 0) {
    int rc = polled_resume(&r->p);
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(r->p.fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (rc != 0 || err == ENODEV || err == ENXIO) {
      snprintf(failure, sizeof failure, "capture on %s stopped: %s", r->p.device,
               rc != 0 ? uv_strerror(rc) : "the interface disappeared");
      fail = failure;
      polled_stop(&r->p);
    }
  }
  if (count > 0 || fail != NULL) polled_deliver(&r->p, count, fail);
  // JS is done with them (the mapping outlives a close() from inside onBatch: `mapped` pins it).
  for (uint32_t k = 0, f = first; k < taken; k++, f = (f + 1) % r->frame_nr) {
    struct tpacket2_hdr* h2 = (struct tpacket2_hdr*)frame_at(r, f);
    __atomic_store_n(&h2->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  }
}

static void ring_on_readable(polled_t* p, int status) {
  ring_t* r = (ring_t*)p;
  if (r->version == TPACKET_V2) ring_read_v2(r, status);
  else ring_read(r, status);
}

static int query_ifindex(const char* name, int* index) {
  if (strlen(name) >= IFNAMSIZ || name[0] == 0) return EINVAL;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name));
  int err = ioctl(s, SIOCGIFINDEX, &ifr) != 0 ? errno : 0;
  if (err == 0) *index = ifr.ifr_ifindex;
  if (err == 0 && ioctl(s, SIOCGIFHWADDR, &ifr) == 0 && ifr.ifr_hwaddr.sa_family != 1 /* ARPHRD_ETHER */)
    err = EPFNOSUPPORT;
  close(s);
  return err;
}

static napi_value ring_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    throw_code(env, "EINVAL", "Ring(options, frames, meta) needs 3 arguments");
    return NULL;
  }
  napi_value opts = argv[0];
  char device[IF_NAMESIZE + 1];
  char filter[8192];
  if (!get_named_string(env, opts, "device", device, sizeof device) || !get_named_string(env, opts, "filter", filter, sizeof filter))
    return NULL;
  uint32_t batch, slot, block_size, block_count, retire_ms, vnet_req, version, frame_size, fanout, in_place;
  if (!get_opt_u32(env, opts, "fanoutGroup", 0, &fanout) || !get_opt_u32(env, opts, "inPlace", 1, &in_place)) return NULL;
  if (fanout > 0xffff) {
    throw_code(env, "EINVAL", "fanoutGroup must be 0 (none) or a group id 1..65535");
    return NULL;
  }
  if (!get_opt_u32(env, opts, "batchSize", 256, &batch) || !get_opt_u32(env, opts, "slotSize", 10240, &slot) ||
      !get_opt_u32(env, opts, "blockSize", 1u << 18, &block_size) || !get_opt_u32(env, opts, "blockCount", 128, &block_count) ||
      !get_opt_u32(env, opts, "retireMs", 1, &retire_ms) || !get_opt_u32(env, opts, "vnetHeader", 1, &vnet_req) ||
      !get_opt_u32(env, opts, "version", 3, &version) || !get_opt_u32(env, opts, "frameSize", 2048, &frame_size))
    return NULL;
  long page = sysconf(_SC_PAGESIZE);
  if (batch == 0 || batch > MAX_BATCH || slot < 64 || slot > MAX_SLOT) {
    throw_code(env, "EINVAL", "batchSize must be 1..%u and slotSize 64..%u", MAX_BATCH, MAX_SLOT);
    return NULL;
  }
  if (block_size < (uint32_t)page || block_size % (uint32_t)page != 0 || (block_size & (block_size - 1)) != 0 ||
      block_size > (1u << 24) || block_count < 2 || block_count > 65536 || retire_ms == 0 || retire_ms > 1000 ||
      (version != 2 && version != 3) || frame_size < 256 || frame_size % TPACKET_ALIGNMENT != 0 || frame_size > block_size) {
    throw_code(env, "EINVAL", "blockSize must be a power of two of at least a page (max 16 MiB), blockCount 2..65536, retireMs 1..1000");
    return NULL;
  }
  uint8_t* frames;
  uint32_t* meta;
  {
    size_t n = 0;
    void* data = NULL;
    if (!get_typed_area(env, argv[1], napi_uint8_array, &n, &data) || n < (size_t)batch * slot) {
      throw_code(env, "EINVAL", "frames must be a Buffer of at least batchSize*slotSize bytes");
      return NULL;
    }
    frames = (uint8_t*)data;
    if (!get_typed_area(env, argv[2], napi_uint32_array, &n, &data) || n < (size_t)batch * META_WORDS) {
      throw_code(env, "EINVAL", "meta must be a Uint32Array of at least batchSize*%d entries", META_WORDS);
      return NULL;
    }
    meta = (uint32_t*)data;
  }
  int ifindex = 0;
  int qerr = query_ifindex(device, &ifindex);
  if (qerr == EPFNOSUPPORT) {
    throw_code(env, "ELINKTYPE", "device \"%s\" is not Ethernet; Sluice needs Ethernet", device);
    return NULL;
  }
  if (qerr != 0) {
    throw_code(env, "ENODEV",
               "no such device \"%s\" (%s): check the name with `ip link` and that this process runs in the "
               "interface's network namespace",
               device, strerror(qerr));
    return NULL;
  }
  struct bpf_program prog;
  if (!compile_filter(env, filter, &prog)) return NULL;

  // Protocol 0: nothing is queued until bind(), after the ring and the filter are in place.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    pcap_freecode(&prog);
    throw_code(env, (e == EPERM || e == EACCES) ? "EPERM" : "EIO",
               "cannot open a packet socket for \"%s\": %s%s", device, strerror(e),
               (e == EPERM || e == EACCES) ? ": are you root / do you have CAP_NET_RAW?" : "");
    return NULL;
  }
  const char* step = NULL;
  int v = version == 2 ? TPACKET_V2 : TPACKET_V3;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) != 0) step = "PACKET_VERSION TPACKET_V3";
  bool vnet = false;
  if (step == NULL && vnet_req) {
    int one = 1;
    // The kernel then writes a virtio_net_hdr in front of each frame: checksum start/offset of a
    // partial checksum and the segment size of a GSO super-frame.
    vnet = setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) == 0;
  }
  struct tpacket_req3 req;
  memset(&req, 0, sizeof req);
  req.tp_block_size = block_size;
  req.tp_block_nr = block_count;
  req.tp_frame_size = TPACKET_ALIGNMENT << 7;  // V3 ignores it, but it must divide the block
  req.tp_frame_nr = (unsigned)(((uint64_t)block_size * block_count) / req.tp_frame_size);
  req.tp_retire_blk_tov = retire_ms;
  req.tp_sizeof_priv = 0;
  req.tp_feature_req_word = 0;
  uint32_t frames_per_block = block_size / frame_size;
  if (version == 2) {
    // V2: fixed slots; a frame that does not fit one is also queued whole to the socket.
    struct tpacket_req req2;
    memset(&req2, 0, sizeof req2);
    req2.tp_block_size = block_size;
    req2.tp_block_nr = block_count;
    req2.tp_frame_size = frame_size;
    req2.tp_frame_nr = frames_per_block * block_count;
    int thresh = 1;
    if (step == NULL && setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &thresh, sizeof thresh) != 0)
      step = "PACKET_COPY_THRESH";
    // Those copies count against the receive buffer (the kernel makes none once it is full):
    // room for a burst of 64 KiB super-frames. FORCE needs CAP_NET_ADMIN; else up to rmem_max.
    int rcvbuf = 8 << 20;
    if (step == NULL && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
      (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (step == NULL && setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req2, sizeof req2) != 0) step = "PACKET_RX_RING";
  } else if (step == NULL && setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) {
    step = "PACKET_RX_RING";
  }
  size_t map_len = (size_t)block_size * block_count;
  uint8_t* map = MAP_FAILED;
  if (step == NULL) {
    // Plain shared mapping: pages count as resident only once touched (no MAP_POPULATE).
    map = (uint8_t*)mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) step = "mmap of the ring";
  }
  if (step == NULL && attach_filter(fd, &prog) != 0) step = "SO_ATTACH_FILTER";
  pcap_freecode(&prog);
  if (step == NULL) {
    int one = 1;
    (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr*)&sll, sizeof sll) != 0) step = "bind";
  }
  // Workers: every worker's socket joins one fanout group after bind. PACKET_FANOUT_HASH sends
  // all frames of a flow to one member (the kernel's symmetric flow hash, which leaves out the
  // ports of every fragment, so a datagram's fragments stay together too). No
  // PACKET_FANOUT_FLAG_DEFRAG: it would hand the ring reassembled datagrams bigger than the MTU,
  // which a packet socket cannot send on; Sluice forwards fragments as fragments. No ROLLOVER:
  // a full ring must not move a flow to another worker.
  if (step == NULL && fanout != 0) {
    int arg = (int)(fanout | ((uint32_t)PACKET_FANOUT_HASH << 16));
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) != 0) step = "PACKET_FANOUT";
  }
  if (step != NULL) {
    int e = errno;
    if (map != MAP_FAILED) munmap(map, map_len);
    close(fd);
    if (e == ENETDOWN) {
      throw_code(env, "ENETDOWN", "interface \"%s\" is down: bring it up with `ip link set %s up`", device, device);
    } else if (e == ENOMEM) {
      throw_code(env, "ENOMEM", "%s on \"%s\" failed: %s (ring of %u blocks of %u bytes: lower capture.bufferMiB?)", step,
                 device, strerror(e), block_count, block_size);
    } else {
      throw_code(env, "EIO", "%s on \"%s\" failed: %s", step, device, strerror(e));
    }
    return NULL;
  }
  ring_t* r = (ring_t*)calloc(1, sizeof *r);
  if (r == NULL) {
    munmap(map, map_len);
    close(fd);
    throw_code(env, "ENOMEM", "out of memory");
    return NULL;
  }
  polled_init(&r->p, &ring_ops, env, fd, device);
  r->map = map;
  r->map_len = map_len;
  r->block_size = block_size;
  r->block_count = block_count;
  r->vnet = vnet;
  r->in_place = in_place != 0;
  r->version = version == 2 ? TPACKET_V2 : TPACKET_V3;
  r->frame_size = frame_size;
  r->frames_per_block = frames_per_block;
  r->frame_nr = frames_per_block * block_count;
  r->big_len = 65536 + 256;
  r->big = version == 2 ? (uint8_t*)malloc(r->big_len) : NULL;
  r->frames = frames;
  r->meta = meta;
  r->batch = batch;
  r->slot = slot;
  if (!polled_wrap(&r->p, env, self, ring_finalize, argv[1], &r->frames_ref, argv[2], &r->meta_ref)) {
    munmap(map, map_len);
    close(fd);
    free(r->big);
    free(r);
    return NULL;
  }
  // V3: the mapped ring as one external Buffer, where GSO super-frames are read in place.
  // V2: the buffer a frame too big for its slot is read into.
  napi_value ringbuf;
  if (r->version == TPACKET_V2 && r->big == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (napi_create_external_buffer(env, r->big != NULL ? r->big_len : map_len, r->big != NULL ? r->big : map,
                                  map_finalize, r, &ringbuf) == napi_ok) {
    r->p.refs++;
    napi_set_named_property(env, self, "ring", ringbuf);
  }
  // V2: the mapped ring as one external Buffer too, over which JS makes one view per ring frame
  // (frames read in place). frameCount 0 (V3, or inPlace 0): no views, every frame is copied.
  uint32_t view_frames = 0;
  if (r->version == TPACKET_V2 && r->in_place) {
    napi_value mapped;
    if (napi_create_external_buffer(env, map_len, map, map_finalize, r, &mapped) != napi_ok) {
      throw_code(env, "ENAPI", "cannot wrap the mapped ring in a Buffer");
      return NULL;
    }
    r->p.refs++;
    napi_set_named_property(env, self, "mapped", mapped);
    view_frames = r->frame_nr;
  }
  set_number(env, self, "frameCount", view_frames);
  set_number(env, self, "framesPerBlock", frames_per_block);
  set_number(env, self, "frameBytes", frame_size);
  set_number(env, self, "blockBytes", block_size);
  set_number(env, self, "macOffset", mac_offset(vnet));
  napi_value b;
  napi_get_boolean(env, vnet, &b);
  napi_set_named_property(env, self, "vnetHeader", b);
  set_number(env, self, "ifindex", ifindex);
  set_number(env, self, "fd", r->p.fd);  // the worker pool holds the socket while a worker restarts
  return self;
}

static ring_t* ring_this(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv, bool must_be_open) {
  return (ring_t*)polled_this(env, info, &ring_ops, argc, argv, NULL, must_be_open);
}

static napi_value ring_start(napi_env env, napi_callback_info info) { return polled_start(env, info, &ring_ops); }

static napi_value ring_set_filter(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  ring_t* r = ring_this(env, info, &argc, argv, true);
  if (r == NULL) return NULL;
  char filter[8192];
  size_t len = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_string || napi_get_value_string_utf8(env, argv[0], filter, sizeof filter, &len) != napi_ok ||
      len + 1 >= sizeof filter) {
    throw_code(env, "EINVAL", "setFilter(filter) needs a string of at most %zu bytes", sizeof filter - 2);
    return NULL;
  }
  struct bpf_program prog;
  if (!compile_filter(env, filter, &prog)) return NULL;  // the previous filter stays
  // SO_ATTACH_FILTER swaps the program atomically: no frame passes unfiltered in between.
  int rc = attach_filter(r->p.fd, &prog);
  int e = errno;
  pcap_freecode(&prog);
  if (rc != 0) throw_code(env, "EFILTER", "cannot install capture filter \"%s\": %s", filter, strerror(e));
  return NULL;
}

static void ring_poll_stats(ring_t* r) {
  if (r->p.closed || r->p.fd < 0) return;
  struct tpacket_stats_v3 st;
  socklen_t len = sizeof st;
  memset(&st, 0, sizeof st);
  // Reading resets the kernel's counters: keep running totals.
  if (getsockopt(r->p.fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
    r->received += st.tp_packets;
    r->dropped += st.tp_drops;
    r->freezes += st.tp_freeze_q_cnt;
  }
}

static napi_value ring_stats(napi_env env, napi_callback_info info) {
  ring_t* r = ring_this(env, info, NULL, NULL, false);
  if (r == NULL) return NULL;
  ring_poll_stats(r);
  napi_value out;
  napi_create_object(env, &out);
  set_number(env, out, "received", r->received);
  set_number(env, out, "dropped", r->dropped);
  set_number(env, out, "freezes", r->freezes);
  set_number(env, out, "blocks", r->blocks);
  set_number(env, out, "callbackErrors", r->p.callback_errors);
  return out;
}

static napi_value ring_take_error(napi_env env, napi_callback_info info) { return polled_take_error(env, info, &ring_ops); }

static napi_value ring_close(napi_env env, napi_callback_info info) { return polled_close(env, info, &ring_ops); }

// walkBlock(block, vnet, slotSize, frames, meta): reads one retired block held in a Buffer with
// the same code the ring uses; returns the frame count. For golden-byte unit tests; no socket.
static napi_value walk_block(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  void *bdata = NULL, *fdata = NULL, *mdata = NULL;
  size_t blen = 0, flen = 0, mlen = 0;
  napi_typedarray_type t1, t2, t3;
  bool vnet = false;
  uint32_t slot = 0;
  if (argc < 5 || napi_get_typedarray_info(env, argv[0], &t1, &blen, &bdata, NULL, NULL) != napi_ok ||
      napi_get_value_bool(env, argv[1], &vnet) != napi_ok || napi_get_value_uint32(env, argv[2], &slot) != napi_ok ||
      napi_get_typedarray_info(env, argv[3], &t2, &flen, &fdata, NULL, NULL) != napi_ok ||
      napi_get_typedarray_info(env, argv[4], &t3, &mlen, &mdata, NULL, NULL) != napi_ok || t1 != napi_uint8_array ||
      t2 != napi_uint8_array || t3 != napi_uint32_array || slot < 64 || blen < sizeof(struct tpacket_block_desc)) {
    throw_code(env, "EINVAL", "walkBlock(block: Buffer, vnet: boolean, slotSize, frames: Buffer, meta: Uint32Array)");
    return NULL;
  }
  struct tpacket_block_desc* bd = (struct tpacket_block_desc*)bdata;
  uint32_t n = bd->hdr.bh1.num_pkts;
  uint32_t batch = (uint32_t)(flen / slot);
  if (mlen / META_WORDS < batch) batch = (uint32_t)(mlen / META_WORDS);
  walk_t w = {(uint8_t*)fdata, (uint32_t*)mdata, slot, vnet, (const uint8_t*)bdata, false};
  uint32_t off = bd->hdr.bh1.offset_to_first_pkt, count = 0;
  for (uint32_t k = 0; k < n && count < batch; k++) {
    if (off + sizeof(struct tpacket3_hdr) > blen) break;
    struct tpacket3_hdr* fh = (struct tpacket3_hdr*)((uint8_t*)bdata + off);
    if ((size_t)off + fh->tp_mac + fh->tp_snaplen > blen) break;  // a golden block that lies
    if (take_frame(&w, fh, count)) count++;
    off += fh->tp_next_offset;
  }
  napi_value out;
  napi_create_uint32(env, count, &out);
  return out;
}

// walkFramesV2(area, frameSize, vnet, slotSize, frames, meta): reads the TPACKET_V2 frame slots
// of `area` (frameSize bytes each, one block: ring frame k at k * frameSize) that the kernel
// marked TP_STATUS_USER, with the code the ring uses: frames at macOffset stay in `area` (and get
// their partial checksum completed there), the others are copied to `frames`. No socket: a
// TP_STATUS_COPY frame keeps its cut ring copy. Golden-byte unit tests.
static napi_value walk_frames_v2(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  void *adata = NULL, *fdata = NULL, *mdata = NULL;
  size_t alen = 0, flen = 0, mlen = 0;
  napi_typedarray_type t1, t2, t3;
  bool vnet = false;
  uint32_t fsize = 0, slot = 0;
  if (argc < 6 || napi_get_typedarray_info(env, argv[0], &t1, &alen, &adata, NULL, NULL) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &fsize) != napi_ok || napi_get_value_bool(env, argv[2], &vnet) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &slot) != napi_ok ||
      napi_get_typedarray_info(env, argv[4], &t2, &flen, &fdata, NULL, NULL) != napi_ok ||
      napi_get_typedarray_info(env, argv[5], &t3, &mlen, &mdata, NULL, NULL) != napi_ok || t1 != napi_uint8_array ||
      t2 != napi_uint8_array || t3 != napi_uint32_array || slot < 64 || fsize < 128) {
    throw_code(env, "EINVAL", "walkFramesV2(area: Buffer, frameSize, vnet: boolean, slotSize, frames: Buffer, meta: Uint32Array)");
    return NULL;
  }
  uint32_t batch = (uint32_t)(flen / slot);
  if (mlen / META_WORDS < batch) batch = (uint32_t)(mlen / META_WORDS);
  walk_t w = {(uint8_t*)fdata, (uint32_t*)mdata, slot, vnet, NULL, true};
  uint32_t count = 0;
  for (size_t off = 0; off + fsize <= alen && count < batch; off += fsize) {
    uint8_t* base = (uint8_t*)adata + off;
    const struct tpacket2_hdr* h2 = (const struct tpacket2_hdr*)base;
    if ((h2->tp_status & TP_STATUS_USER) == 0) continue;
    if (h2->tp_mac + h2->tp_snaplen > fsize || h2->tp_snaplen > slot) continue;  // a golden slot that lies
    if (take_frame_v2(&w, base, h2->tp_status, count, (uint32_t)(off / fsize), -1, 0)) count++;
  }
  napi_value out;
  napi_create_uint32(env, count, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value cls, v;
  napi_property_descriptor props[] = {
      {"start", NULL, ring_start, NULL, NULL, NULL, napi_default_method, NULL},
      {"setFilter", NULL, ring_set_filter, NULL, NULL, NULL, napi_default_method, NULL},
      {"stats", NULL, ring_stats, NULL, NULL, NULL, napi_default_method, NULL},
      {"takeError", NULL, ring_take_error, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, ring_close, NULL, NULL, NULL, napi_default_method, NULL},
  };
  if (napi_define_class(env, "Ring", NAPI_AUTO_LENGTH, ring_new, NULL, sizeof props / sizeof props[0], props, &cls) !=
      napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "Ring", cls);
  napi_create_uint32(env, META_WORDS, &v);
  napi_set_named_property(env, exports, "META_WORDS", v);
  napi_create_uint32(env, mac_offset(false), &v);
  napi_set_named_property(env, exports, "V2_MAC_OFFSET", v);
  napi_create_uint32(env, mac_offset(true), &v);
  napi_set_named_property(env, exports, "V2_VNET_MAC_OFFSET", v);
  napi_value fn;
  napi_create_function(env, "walkBlock", NAPI_AUTO_LENGTH, walk_block, NULL, &fn);
  napi_set_named_property(env, exports, "walkBlock", fn);
  napi_create_function(env, "walkFramesV2", NAPI_AUTO_LENGTH, walk_frames_v2, NULL, &fn);
  napi_set_named_property(env, exports, "walkFramesV2", fn);
  return exports;
}
