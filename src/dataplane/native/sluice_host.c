// Sluice host facts the control process needs and Node does not expose:
//   peerCredentials(fd)  SO_PEERCRED + SO_PEERGROUPS of a connected unix socket, so the admin
//                        API authorizes by who is calling, not by the socket file's mode alone;
//   groupId(name)        getgrnam_r, so admin.group may name a group;
//   lockFile(path)       open + flock(LOCK_EX|LOCK_NB): the kernel drops the lock when the holder
//                        dies, so a stale lock of a dead pid never blocks a restart;
//   holdPacketSocket(fd) dup of an AF_PACKET socket (else -errno): the worker pool keeps each
//                        worker's capture socket, and with it its place in the fanout group,
//                        alive while a crashed worker thread is restarted (worker-pool.ts);
//   tuneMalloc(mmapThreshold, arenaMax)
//                        mallopt: see src/runtime/malloc-tuning.ts for why.
// None of this is on the packet path.

#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "sluice_host.h"
#include "sluice_shm.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define MAX_PEER_GROUPS 1024
#define MAX_PATH_BYTES 4096

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static bool int_arg(napi_env env, napi_callback_info info, int32_t *out) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return false;
  return napi_get_value_int32(env, argv[0], out) == napi_ok;
}

static bool string_arg(napi_env env, napi_callback_info info, char *buf, size_t size) {
  size_t argc = 1, len = 0;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return false;
  if (napi_get_value_string_utf8(env, argv[0], buf, size, &len) != napi_ok) return false;
  return len + 1 < size;  // a truncated name or path would name something else
}

static void set_int(napi_env env, napi_value obj, const char *key, int64_t v) {
  napi_value n;
  napi_create_int64(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

// peerCredentials(fd) -> { pid, uid, gid, groups: number[] }
static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!int_arg(env, info, &fd) || fd < 0) {
    napi_throw_type_error(env, NULL, "peerCredentials(fd): fd must be a non-negative integer");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "SO_PEERCRED", errno);

  gid_t groups[MAX_PEER_GROUPS];
  socklen_t glen = sizeof groups;
  uint32_t ngroups = 0;
  // Supplementary groups: a member of admin.group is usually not in it as primary group.
  // Kernels before 4.13 lack SO_PEERGROUPS; then only the primary gid counts.
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) ngroups = glen / sizeof(gid_t);

  napi_value out, arr;
  napi_create_object(env, &out);
  set_int(env, out, "pid", cred.pid);
  set_int(env, out, "uid", cred.uid);
  set_int(env, out, "gid", cred.gid);
  napi_create_array_with_length(env, ngroups, &arr);
  for (uint32_t i = 0; i < ngroups; i++) {
    napi_value g;
    napi_create_int64(env, groups[i], &g);
    napi_set_element(env, arr, i, g);
  }
  napi_set_named_property(env, out, "groups", arr);
  return out;
}

// groupId(name) -> gid, or null when no such group
static napi_value group_id(napi_env env, napi_callback_info info) {
  char name[256];
  if (!string_arg(env, info, name, sizeof name)) {
    napi_throw_type_error(env, NULL, "groupId(name): name must be a string shorter than 255 bytes");
    return NULL;
  }
  struct group grp, *found = NULL;
  size_t size = 16384;
  char *buf = malloc(size);
  int err;
  while (buf && (err = getgrnam_r(name, &grp, buf, size, &found)) == ERANGE && size < (1u << 22)) {
    size *= 2;
    char *bigger = realloc(buf, size);
    if (!bigger) break;
    buf = bigger;
  }
  if (!buf) return throw_errno(env, "getgrnam_r", ENOMEM);
  napi_value out;
  if (found) napi_create_int64(env, found->gr_gid, &out);
  else napi_get_null(env, &out);
  free(buf);
  return out;
}

// lockFile(path) -> fd (>= 0, held until the process exits or closes it), or -errno
// (-EWOULDBLOCK: another process holds it).
static napi_value lock_file(napi_env env, napi_callback_info info) {
  char path[MAX_PATH_BYTES];
  if (!string_arg(env, info, path, sizeof path)) {
    napi_throw_type_error(env, NULL, "lockFile(path): path must be a string");
    return NULL;
  }
  int result;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    result = -errno;
  } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    result = -errno;
    close(fd);
  } else {
    result = fd;
  }
  napi_value out;
  napi_create_int32(env, result, &out);
  return out;
}

// holdPacketSocket(fd) -> a new fd (close-on-exec) on the same socket, or -errno; -EBADF when fd
// is not an AF_PACKET socket (a worker's fd number reused after it closed its socket).
static napi_value hold_packet_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "holdPacketSocket(fd): fd must be a non-negative integer");
    return NULL;
  }
  int result;
  int domain = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    result = -errno;
  } else if (domain != AF_PACKET) {
    result = -EBADF;
  } else {
    result = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (result < 0) result = -errno;
  }
  napi_value out;
  napi_create_int32(env, result, &out);
  return out;
}

// tuneMalloc(mmapThreshold, arenaMax) -> true when glibc took both settings.
static napi_value tune_malloc(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t threshold = 0, arenas = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &threshold) != napi_ok || napi_get_value_int32(env, argv[1], &arenas) != napi_ok ||
      threshold < 4096 || arenas < 1) {
    napi_throw_type_error(env, NULL, "tuneMalloc(mmapThreshold >= 4096, arenaMax >= 1)");
    return NULL;
  }
  bool ok = mallopt(M_MMAP_THRESHOLD, threshold) == 1;
  ok = mallopt(M_ARENA_MAX, arenas) == 1 && ok;
  napi_value out;
  napi_get_boolean(env, ok, &out);
  return out;
}

void sluice_host_register(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "peerCredentials", NAPI_AUTO_LENGTH, peer_credentials, NULL, &fn);
  napi_set_named_property(env, exports, "peerCredentials", fn);
  napi_create_function(env, "groupId", NAPI_AUTO_LENGTH, group_id, NULL, &fn);
  napi_set_named_property(env, exports, "groupId", fn);
  napi_create_function(env, "lockFile", NAPI_AUTO_LENGTH, lock_file, NULL, &fn);
  napi_set_named_property(env, exports, "lockFile", fn);
  napi_create_function(env, "holdPacketSocket", NAPI_AUTO_LENGTH, hold_packet_socket, NULL, &fn);
  napi_set_named_property(env, exports, "holdPacketSocket", fn);
  napi_create_function(env, "tuneMalloc", NAPI_AUTO_LENGTH, tune_malloc, NULL, &fn);
  napi_set_named_property(env, exports, "tuneMalloc", fn);
  sluice_shm_register(env, exports);
}
