// Shared memory for state that must outlive one data-plane process (the flow table):
//   mapFile(path, bytes)  open or create `path` (mode 0600, never through a symlink), size it to
//                         `bytes` when it is new (empty), and map it MAP_SHARED as an ArrayBuffer.
//                         bytes = 0 maps an existing file at its own size. The mapping lives until
//                         the ArrayBuffer is collected or the process exits; the file stays, so the
//                         next data plane (a restart, an upgrade) maps the same bytes.
// Config time only, never on the packet path.

#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice_shm.h"

#define MAX_PATH_BYTES 4096
// Far above any flow table (FLOW_MAX_CAPACITY x 58 bytes); a bigger request is a caller's bug.
#define MAX_MAP_BYTES (((int64_t)1) << 36)

static napi_value fail(napi_env env, const char *what, const char *path, int err) {
  char msg[MAX_PATH_BYTES + 128];
  snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static void unmap(napi_env env, void *data, void *hint) {
  munmap(data, (size_t)(uintptr_t)hint);
}

// mapFile(path, bytes) -> ArrayBuffer over the file's bytes (MAP_SHARED)
static napi_value map_file(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0;
  napi_value argv[2];
  char path[MAX_PATH_BYTES];
  int64_t want = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len + 1 >= sizeof path ||
      napi_get_value_int64(env, argv[1], &want) != napi_ok || want < 0 || want > MAX_MAP_BYTES) {
    napi_throw_type_error(env, NULL, "mapFile(path, bytes): a path and a byte count in 0..2^36");
    return NULL;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(env, "open", path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return fail(env, "fstat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return fail(env, "map", path, EINVAL);
  }
  int64_t size = (int64_t)st.st_size;
  if (size == 0 && want > 0) {
    // A new file: its pages read as zero, which is what a fresh table's arrays must be.
    if (ftruncate(fd, (off_t)want) != 0) {
      int err = errno;
      close(fd);
      return fail(env, "ftruncate", path, err);
    }
    size = want;
  }
  if (size == 0) {
    close(fd);
    return fail(env, "map (empty file)", path, ENODATA);
  }
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);  // the mapping keeps the file's pages
  if (p == MAP_FAILED) return fail(env, "mmap", path, err);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, (size_t)size, unmap, (void *)(uintptr_t)size, &ab) != napi_ok) {
    munmap(p, (size_t)size);
    napi_throw_error(env, NULL, "mapFile: this Node cannot wrap external memory in an ArrayBuffer");
    return NULL;
  }
  return ab;
}

void sluice_shm_register(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "mapFile", NAPI_AUTO_LENGTH, map_file, NULL, &fn);
  napi_set_named_property(env, exports, "mapFile", fn);
}
