// Host facts for the control process (sluice_host.c): peer credentials, group ids, file locks.
#ifndef SLUICE_HOST_H
#define SLUICE_HOST_H
#include <node_api.h>
void sluice_host_register(napi_env env, napi_value exports);
#endif
