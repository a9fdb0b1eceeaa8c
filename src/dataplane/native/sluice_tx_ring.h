// A mapped AF_PACKET transmit ring (PACKET_TX_RING, TPACKET_V2) for the Tx of sluice_pcap.c.
// See sluice_tx_ring.c for how frames move between this process and the kernel.
#ifndef SLUICE_TX_RING_H
#define SLUICE_TX_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint8_t* map;        // the mapped ring: block_nr blocks of block_size bytes
  size_t map_len;
  uint32_t frame_size;  // bytes per ring frame: header (TX_RING_DATA_OFFSET) + slot, 16-aligned
  uint32_t frames_per_block;
  uint32_t block_size;
  uint32_t block_nr;
  uint32_t frame_nr;   // frames in the ring (>= batch)
  uint32_t* data_off;  // per frame: offset of its first data byte in map
  uint32_t slot;       // data bytes a frame holds (the Tx slot size)
  uint32_t batch;      // most frames one flush takes
  uint32_t head;       // the frame the kernel sends next; slot 0 of the next flush
  uint32_t window;     // frames from head that are ours (<= batch); the kernel holds the next one
  uint32_t window_given;  // the window JS's slot views were aimed with: slots past it are spill slots
  bool clean;          // the last kick returned after every frame completed: all frames are ours
  int ifindex;
  uint32_t mtu;        // cached; re-read when a frame looks too long for it
  char device[16];  // IFNAMSIZ
} tx_ring_t;

// Sets TPACKET_V2 and maps a transmit ring of at least `batch` frames of `slot` data bytes on
// the (not yet bound) packet socket fd. Returns 0, or an errno with *step naming what failed.
int tx_ring_open(tx_ring_t* r, int fd, uint32_t batch, uint32_t slot, const char* device, uint32_t mtu,
                 const char** step);

// Unmaps the ring. Only once nothing can read the mapping any more (an external Buffer over it).
void tx_ring_release(tx_ring_t* r);

typedef struct {
  double errors;
  int last_errno;
} tx_ring_errors_t;

// Sends the frames JS wrote into slots 0..count-1 (slot i is ring frame head+i below
// window_given, else spill slot i of `spill`, batch slots of `slot` bytes; lengths[i] bytes each)
// with one send() kick. Frames that cannot go are counted in *err and left out; lengths[0..sent)
// are rewritten to the lengths of the frames sent, in order. Returns how many frames the kernel
// took. Updates head and window for the next batch.
uint32_t tx_ring_flush(tx_ring_t* r, int fd, uint32_t* lengths, uint32_t count, uint8_t* spill,
                       tx_ring_errors_t* err);

#endif
