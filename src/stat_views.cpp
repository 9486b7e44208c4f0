/*
 * stat_views.cpp — SQL-callable functions behind the pg_stat_bgw_proxy*
 * views. Versioned names (..._1_0) so a later extension version can add
 * columns with a new function while old SQL keeps working.
 *
 * Reads only: atomics without locks, plus the shared lock for the fields a
 * worker publishes together (pid, started_at).
 */
#include "shmem.h"
#include "submit_queue.hpp"

#include "pg_headers.h"

extern "C" {
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_workers_1_0);
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_queue_1_0);
}

using namespace bgw;

static const char *run_state_name(uint32 s)
{
    switch (s) {
    case WORKER_IDLE: return "idle";
    case WORKER_BUSY: return "busy";
    default: return "stopped";
    }
}

Datum pg_stat_bgw_proxy_workers_1_0(PG_FUNCTION_ARGS)
{
    require_preloaded();
    InitMaterializedSRF(fcinfo, 0);
    auto *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

    for (int i = 0; i < proxy_shared->nworkers; i++) {
        WorkerState *w = worker_state(i);
        Datum values[11];
        bool nulls[11] = {false};

        LWLockAcquire(proxy_shared->lock, LW_SHARED);
        uint32 pid = pg_atomic_read_u32(&w->pid);
        TimestampTz started = w->started_at;
        LWLockRelease(proxy_shared->lock);

        values[0] = Int32GetDatum(i);
        values[1] = Int32GetDatum((int32) pid);
        nulls[1] = (pid == 0);
        values[2] = CStringGetTextDatum(run_state_name(pg_atomic_read_u32(&w->run_state)));
        values[3] = TimestampTzGetDatum(started);
        nulls[3] = (pid == 0);
        values[4] = Int32GetDatum((int32) pg_atomic_read_u32(&w->conns_open));
        values[5] = Int32GetDatum((int32) pg_atomic_read_u32(&w->conns_idle));
        values[6] = Int32GetDatum((int32) pg_atomic_read_u32(&w->conns_active));
        values[7] = Int32GetDatum((int32) pg_atomic_read_u32(&w->conns_connecting));
        values[8] = Int32GetDatum((int32) pg_atomic_read_u32(&w->in_flight));
        values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&w->served));
        values[10] = Int64GetDatum((int64) pg_atomic_read_u64(&w->connects));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum) 0;
}

Datum pg_stat_bgw_proxy_queue_1_0(PG_FUNCTION_ARGS)
{
    require_preloaded();
    InitMaterializedSRF(fcinfo, 0);
    auto *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
    Datum values[5];
    bool nulls[5] = {false};
    values[0] = Int32GetDatum(proxy_shared->nworkers);
    values[1] = Int64GetDatum((int64) kSubmitQueueCapacity);
    values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&proxy_shared->submitted));
    values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&proxy_shared->completed));
    values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&proxy_shared->queue_full_waits));
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    return (Datum) 0;
}

extern "C" {
PG_FUNCTION_INFO_V1(bgw_proxy_cluster_cache_1_0);
}

/* The shared cluster cache: which configurations every backend shares. */
Datum bgw_proxy_cluster_cache_1_0(PG_FUNCTION_ARGS)
{
    require_preloaded();
    InitMaterializedSRF(fcinfo, 0);
    auto *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
    /* copy what the rows need under the lock; build them after */
    struct Row {
        bool used;
        Oid dbid;
        char name[NAMEDATALEN];
        int32 version;
        uint32 nparts;
    };
    int n = proxy_shared->nclusters;
    Row *rows = (Row *) palloc0(sizeof(Row) * (n + 1));
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    for (int i = 0; i < n; i++) {
        SharedCluster *s = shared_cluster(i);
        rows[i].used = s->used;
        if (!s->used)
            continue;
        rows[i].dbid = s->dbid;
        memcpy(rows[i].name, s->name, NAMEDATALEN);
        rows[i].version = s->version;
        memcpy(&rows[i].nparts, s->data, Min(sizeof(uint32), Size(s->len)));
    }
    LWLockRelease(proxy_shared->lock);
    for (int i = 0; i < n; i++) {
        if (!rows[i].used)
            continue;
        Datum values[4];
        bool nulls[4] = {false};
        values[0] = ObjectIdGetDatum(rows[i].dbid);
        values[1] = CStringGetTextDatum(rows[i].name);
        values[2] = Int32GetDatum(rows[i].version);
        values[3] = Int32GetDatum(int32(rows[i].nparts));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum) 0;
}
