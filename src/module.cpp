/*
 * module.cpp — loading bgw_proxy: GUCs, shared memory, background workers.
 */
#include "common/guc.h"
#include "shared/shmem.h"
#include "backend/utility_hook.h"
#include "worker/worker.h"

#include "common/pg_headers.h"

extern "C" {
PG_MODULE_MAGIC;
PGDLLEXPORT void _PG_init(void);
}

void _PG_init(void)
{
    /* Workers and shared memory can only be set up at server start. */
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("bgw_proxy must be loaded via shared_preload_libraries"),
                        errhint("Add bgw_proxy to shared_preload_libraries in postgresql.conf and "
                                "restart the server.")));

    bgw::define_gucs();
    if (bgw::guc_workers > max_worker_processes)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("bgw_proxy.workers (%d) is larger than max_worker_processes (%d)",
                               bgw::guc_workers, max_worker_processes),
                        errhint("Raise max_worker_processes or lower bgw_proxy.workers; parallel query and "
                                "other extensions also use worker processes.")));
    bgw::shmem_register_hooks();
    bgw::utility_hook_register();
    bgw::register_workers();
}
