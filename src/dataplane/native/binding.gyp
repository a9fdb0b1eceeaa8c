{
  "targets": [
    {
      "target_name": "sluice_pcap",
      "sources": ["sluice_pcap.c", "sluice_polled.c", "sluice_host.c", "sluice_shm.c", "sluice_tx_ring.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpcap"]
    },
    {
      "target_name": "sluice_ring",
      "sources": ["sluice_ring.c", "sluice_polled.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpcap"]
    }
  ]
}
