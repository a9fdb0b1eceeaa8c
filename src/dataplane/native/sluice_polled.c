// The polled handle shared by the capture and the receive ring: see sluice_polled.h.
#include "sluice_polled.h"
#include "sluice_napi.h"

#include <stdio.h>

static void on_readable(uv_poll_t* h, int status, int events) {
  polled_t* p = (polled_t*)h->data;
  if (p->closed || !p->polling) return;
  p->ops->read(p, status);
}

static void remove_hook(polled_t* p) {
  if (p->hook != NULL) {
    napi_remove_async_cleanup_hook(p->hook);
    p->hook = NULL;
  }
}

static void on_poll_closed(uv_handle_t* h) {
  polled_t* p = (polled_t*)h->data;
  remove_hook(p);
  polled_unref(p);
}

static void cleanup_hook(napi_async_cleanup_hook_handle handle, void* arg) {
  polled_t* p = (polled_t*)arg;
  p->hook = handle;
  polled_close_native(p);
}

// Drops the references that pin JS callbacks and the wrapper itself.
static void release_js(polled_t* p, napi_env env) {
  delete_ref(env, &p->on_batch_ref);
  delete_ref(env, &p->on_error_ref);
  delete_ref(env, &p->self_ref);
  if (p->async_ctx != NULL) {
    napi_async_destroy(env, p->async_ctx);
    p->async_ctx = NULL;
  }
}

void polled_init(polled_t* p, const polled_ops_t* ops, napi_env env, int fd, const char* device) {
  p->ops = ops;
  p->env = env;
  p->fd = fd;
  p->refs = 1;
  snprintf(p->device, sizeof p->device, "%s", device);
}

bool polled_wrap(polled_t* p, napi_env env, napi_value self, napi_finalize finalize, napi_value frames,
                 napi_ref* frames_ref, napi_value words, napi_ref* words_ref) {
  napi_create_reference(env, frames, 1, frames_ref);
  napi_create_reference(env, words, 1, words_ref);
  if (napi_wrap(env, self, p, finalize, NULL, NULL) != napi_ok) {
    delete_ref(env, frames_ref);
    delete_ref(env, words_ref);
    throw_code(env, "ENAPI", "napi_wrap failed");
    return false;
  }
  napi_add_async_cleanup_hook(env, cleanup_hook, p, &p->hook);
  return true;
}

void polled_unref(polled_t* p) {
  if (--p->refs == 0) p->ops->free(p);
}

void polled_close_native(polled_t* p) {
  if (p->closed) return;
  p->closed = true;
  p->polling = false;
  if (p->poll_inited) {
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t*)&p->poll, on_poll_closed);  // removes the hook when done
  } else {
    remove_hook(p);
  }
  p->ops->close_io(p);
}

void polled_finalize(polled_t* p, napi_env env) {
  polled_close_native(p);
  release_js(p, env);
  delete_ref(env, &p->error_ref);
  polled_unref(p);
}

void polled_stop(polled_t* p) {
  p->polling = false;
  uv_poll_stop(&p->poll);
}

int polled_resume(polled_t* p) { return uv_poll_start(&p->poll, UV_READABLE, on_readable); }

// Hands err to onError; if there is none or it throws, keeps it for takeError().
static void report_error(polled_t* p, napi_env env, napi_value self, napi_value err) {
  napi_value fn, result, exc;
  if (p->on_error_ref != NULL && napi_get_reference_value(env, p->on_error_ref, &fn) == napi_ok && fn != NULL) {
    if (napi_make_callback(env, p->async_ctx, self, fn, 1, &err, &result) == napi_ok) return;
    if (take_exception(env, &exc)) err = exc;
  }
  delete_ref(env, &p->error_ref);
  napi_create_reference(env, err, 1, &p->error_ref);
}

void polled_deliver(polled_t* p, uint32_t count, const char* failure) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value self = NULL, fn = NULL, arg, result, exc;
  napi_get_reference_value(env, p->self_ref, &self);
  p->in_callback = true;
  if (self != NULL && count > 0 && napi_get_reference_value(env, p->on_batch_ref, &fn) == napi_ok && fn != NULL) {
    napi_create_uint32(env, count, &arg);
    if (napi_make_callback(env, p->async_ctx, self, fn, 1, &arg, &result) != napi_ok && take_exception(env, &exc)) {
      p->callback_errors += 1;
      report_error(p, env, self, exc);
    }
  }
  if (self != NULL && failure != NULL) report_error(p, env, self, make_error(env, "ECAPTURE", failure));
  p->in_callback = false;
  if (p->closed) release_js(p, env);  // close() was called from inside a callback
  napi_close_handle_scope(env, scope);
}

polled_t* polled_this(napi_env env, napi_callback_info info, const polled_ops_t* ops, size_t* argc,
                      napi_value* argv, napi_value* self_out, bool must_be_open) {
  napi_value self;
  size_t dummy = 0;
  if (napi_get_cb_info(env, info, argc ? argc : &dummy, argv, &self, NULL) != napi_ok) return NULL;
  polled_t* p = NULL;
  if (napi_unwrap(env, self, (void**)&p) != napi_ok || p == NULL) {
    throw_code(env, "EINVAL", "not a %s", ops->class_name);
    return NULL;
  }
  if (must_be_open && p->closed) {
    throw_code(env, "ECLOSED", "%s on \"%s\" is closed", ops->noun, p->device);
    return NULL;
  }
  if (self_out) *self_out = self;
  return p;
}

napi_value polled_start(napi_env env, napi_callback_info info, const polled_ops_t* ops) {
  size_t argc = 2;
  napi_value argv[2], self;
  polled_t* p = polled_this(env, info, ops, &argc, argv, &self, true);
  if (p == NULL) return NULL;
  if (p->poll_inited) {
    throw_code(env, "EINVAL", "%s on \"%s\" was already started", ops->noun, p->device);
    return NULL;
  }
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t0);
  if (argc >= 2) napi_typeof(env, argv[1], &t1);
  if (t0 != napi_function || (t1 != napi_function && t1 != napi_undefined)) {
    throw_code(env, "EINVAL", "start(onBatch, onError?) needs functions");
    return NULL;
  }
  struct uv_loop_s* loop = NULL;
  NAPI_OR_RETURN(env, napi_get_uv_event_loop(env, &loop), NULL);
  int r = uv_poll_init(loop, &p->poll, p->fd);
  if (r != 0) {
    throw_code(env, ops->io_code, "uv_poll_init on \"%s\" failed: %s", p->device, uv_strerror(r));
    return NULL;
  }
  p->poll.data = p;
  p->poll_inited = true;
  p->refs++;
  napi_value name;
  napi_create_string_utf8(env, ops->resource, NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, self, name, &p->async_ctx);
  napi_create_reference(env, argv[0], 1, &p->on_batch_ref);
  if (t1 == napi_function) napi_create_reference(env, argv[1], 1, &p->on_error_ref);
  napi_create_reference(env, self, 1, &p->self_ref);
  r = uv_poll_start(&p->poll, UV_READABLE, on_readable);
  if (r != 0) {
    throw_code(env, ops->io_code, "uv_poll_start on \"%s\" failed: %s", p->device, uv_strerror(r));
    polled_close_native(p);
    release_js(p, env);
    return NULL;
  }
  p->polling = true;
  return NULL;
}

napi_value polled_take_error(napi_env env, napi_callback_info info, const polled_ops_t* ops) {
  polled_t* p = polled_this(env, info, ops, NULL, NULL, NULL, false);
  if (p == NULL) return NULL;
  napi_value v = NULL;
  if (p->error_ref != NULL) napi_get_reference_value(env, p->error_ref, &v);
  delete_ref(env, &p->error_ref);
  if (v == NULL) napi_get_null(env, &v);
  return v;
}

napi_value polled_close(napi_env env, napi_callback_info info, const polled_ops_t* ops) {
  polled_t* p = polled_this(env, info, ops, NULL, NULL, NULL, false);
  if (p == NULL) return NULL;
  polled_close_native(p);
  if (!p->in_callback) release_js(p, env);  // else polled_deliver releases on return
  return NULL;
}
