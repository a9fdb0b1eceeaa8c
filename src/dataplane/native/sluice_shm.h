// Shared memory that outlives a data-plane process (sluice_shm.c): mapFile.
#ifndef SLUICE_SHM_H
#define SLUICE_SHM_H
#include <node_api.h>
void sluice_shm_register(napi_env env, napi_value exports);
#endif
