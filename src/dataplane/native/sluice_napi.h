// Node-API helpers shared by Sluice's addons (sluice_pcap.c, sluice_ring.c): errors with a code,
// option readers, reference and exception handling. static inline: each addon compiles its copy
// and an unused helper costs nothing.
#ifndef SLUICE_NAPI_H
#define SLUICE_NAPI_H

#include <node_api.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

static inline void throw_code(napi_env env, const char* code, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, code, msg);
}

// On a failed napi call: keep a pending JS exception, else throw one naming the call.
#define NAPI_OR_RETURN(env, call, ret)                                                     \
  do {                                                                                     \
    if ((call) != napi_ok) {                                                               \
      const napi_extended_error_info* info_ = NULL;                                        \
      napi_get_last_error_info((env), &info_);                                             \
      throw_code((env), "ENAPI", "%s failed: %s", #call,                                   \
                 info_ && info_->error_message ? info_->error_message : "unknown");        \
      return (ret);                                                                        \
    }                                                                                      \
  } while (0)

static inline bool get_string(napi_env env, napi_value v, char* out, size_t cap, const char* what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    throw_code(env, "EINVAL", "%s must be a string", what);
    return false;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len + 1 > cap) {
    throw_code(env, "EINVAL", "%s is too long (max %zu bytes)", what, cap - 1);
    return false;
  }
  napi_get_value_string_utf8(env, v, out, cap, &len);
  return true;
}

// opts[name] and its type; false when it is missing or undefined (the caller keeps its default).
static inline bool get_opt_value(napi_env env, napi_value obj, const char* name, napi_value* v, napi_valuetype* t) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return false;
  napi_get_named_property(env, obj, name, v);
  napi_typeof(env, *v, t);
  return *t != napi_undefined;
}

// Reads opts[name] as a non-negative integer; missing/undefined -> def.
static inline bool get_opt_u32(napi_env env, napi_value obj, const char* name, uint32_t def, uint32_t* out) {
  *out = def;
  napi_value v;
  napi_valuetype t;
  if (!get_opt_value(env, obj, name, &v, &t)) return true;
  double d;
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0 ||
      d != (double)(uint32_t)d) {
    throw_code(env, "EINVAL", "option %s must be a non-negative integer", name);
    return false;
  }
  *out = (uint32_t)d;
  return true;
}

static inline bool get_opt_bool(napi_env env, napi_value obj, const char* name, bool def, bool* out) {
  *out = def;
  napi_value v;
  napi_valuetype t;
  if (!get_opt_value(env, obj, name, &v, &t)) return true;
  if (t != napi_boolean) {
    throw_code(env, "EINVAL", "option %s must be a boolean", name);
    return false;
  }
  napi_get_value_bool(env, v, out);
  return true;
}

// True (with its element count and data) when v is a typed array of type `want`; throws nothing,
// so each caller words its own error.
static inline bool get_typed_area(napi_env env, napi_value v, napi_typedarray_type want, size_t* n, void** data) {
  bool is_ta = false;
  napi_typedarray_type tt;
  napi_is_typedarray(env, v, &is_ta);
  return is_ta && napi_get_typedarray_info(env, v, &tt, n, data, NULL, NULL) == napi_ok && tt == want;
}

static inline void delete_ref(napi_env env, napi_ref* r) {
  if (*r != NULL) {
    napi_delete_reference(env, *r);
    *r = NULL;
  }
}

static inline napi_value make_error(napi_env env, const char* code, const char* msg) {
  napi_value c, m, e;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, c, m, &e);
  return e;
}

// Takes a pending exception (if any) off the env.
static inline bool take_exception(napi_env env, napi_value* exc) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) return false;
  return napi_get_and_clear_last_exception(env, exc) == napi_ok;
}

static inline void set_number(napi_env env, napi_value obj, const char* name, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, obj, name, v);
}

#endif
