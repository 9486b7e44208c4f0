/*
 * module.cpp — loading bgw_proxy: GUCs, shared memory, background workers.
 */
#include "guc.h"
#include "shmem.h"
#include "worker.h"

#include "pg_headers.h"

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
    bgw::shmem_register_hooks();
    bgw::register_workers();
}
