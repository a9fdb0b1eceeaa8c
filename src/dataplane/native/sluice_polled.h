// A "polled handle": the part the capture (sluice_pcap.c) and the receive ring (sluice_ring.c)
// share. Both wrap one socket in a JS object, watch it with a level-triggered uv_poll, make one
// call into JS per batch (onBatch), report failures to onError (or keep them for takeError()),
// and close safely from JS, from a finalizer or from the environment's cleanup hook.
//
// The owner embeds a polled_t as its FIRST member (so the napi_wrap pointer is both) and gives
// a polled_ops_t naming what differs: how a readable socket is read, how its I/O is closed, how
// its memory is freed, and the words its messages use.
//
// Lifetime: refs counts the JS wrapper, the open uv handle and anything else the owner pins
// (say an external Buffer over its memory); ops->free runs when the last one goes.
#ifndef SLUICE_POLLED_H
#define SLUICE_POLLED_H

#include <node_api.h>
#include <uv.h>
#include <stdbool.h>
#include <stdint.h>
#include <net/if.h>

typedef struct polled_s polled_t;

typedef struct {
  // Called on a readable (or failed: status < 0) socket while polling; calls polled_deliver.
  void (*read)(polled_t* p, int status);
  // Closes the owner's I/O (socket or pcap handle). No JS: runs from hooks and finalizers.
  void (*close_io)(polled_t* p);
  // Frees the owner once nothing references it.
  void (*free)(polled_t* p);
  const char* noun;        // "capture", "capture ring": in "<noun> on \"eth0\" is closed"
  const char* class_name;  // "Capture", "Ring": in "not a <class_name>"
  const char* resource;    // the async resource name, "SluiceCapture"
  const char* io_code;     // the error code of a failed uv_poll_init/start
} polled_ops_t;

struct polled_s {
  const polled_ops_t* ops;
  napi_env env;
  int fd;
  uv_poll_t poll;
  bool poll_inited;
  bool polling;
  bool closed;
  bool in_callback;
  int refs;  // 1 for the JS wrapper + 1 while the uv handle is open + the owner's own
  double callback_errors;
  napi_ref on_batch_ref;
  napi_ref on_error_ref;
  napi_ref self_ref;   // keeps the wrapper alive while started
  napi_ref error_ref;  // last exception nobody handled (onError missing or threw)
  napi_async_context async_ctx;
  napi_async_cleanup_hook_handle hook;
  char device[IF_NAMESIZE + 1];
};

// Fills the shared fields of a new handle (refs = 1: the JS wrapper).
void polled_init(polled_t* p, const polled_ops_t* ops, napi_env env, int fd, const char* device);
// Wraps the new handle in `self`, pinning the two JS receive areas the native side writes into
// (refs in *frames_ref, *words_ref), and closes its I/O when the environment shuts down. On
// failure: throws ENAPI, drops those refs and returns false (the caller frees what it opened).
bool polled_wrap(polled_t* p, napi_env env, napi_value self, napi_finalize finalize, napi_value frames,
                 napi_ref* frames_ref, napi_value words, napi_ref* words_ref);
// The wrapper's finalizer, after the owner dropped its own references: closes and unrefs.
void polled_finalize(polled_t* p, napi_env env);
void polled_unref(polled_t* p);
// Stops I/O and closes it (ops->close_io). No JS involved: safe from hooks and finalizers.
void polled_close_native(polled_t* p);
// A persistent failure: stop polling (a level-triggered poll would spin) before delivering it.
void polled_stop(polled_t* p);
// Resumes a poll libuv stopped after POLLERR (status < 0); returns the uv error or 0.
int polled_resume(polled_t* p);
// One call into JS for `count` frames, then (failure != NULL) an ECAPTURE error to onError.
void polled_deliver(polled_t* p, uint32_t count, const char* failure);
// The handle of `this` in a method call, or NULL with an exception (not one, or closed).
polled_t* polled_this(napi_env env, napi_callback_info info, const polled_ops_t* ops, size_t* argc,
                      napi_value* argv, napi_value* self_out, bool must_be_open);

// The JS methods both share: start(onBatch, onError?), takeError(), close().
napi_value polled_start(napi_env env, napi_callback_info info, const polled_ops_t* ops);
napi_value polled_take_error(napi_env env, napi_callback_info info, const polled_ops_t* ops);
napi_value polled_close(napi_env env, napi_callback_info info, const polled_ops_t* ops);

#endif
