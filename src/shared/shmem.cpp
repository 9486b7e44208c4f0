/*
 * shmem.cpp — sizing, creating and addressing the "bgw_proxy" segment.
 * The contract for its contents is in shmem.h.
 */
#include "shared/shmem.h"
#include "common/guc.h"
#include "shared/lend_table.h"
#include "shared/node_table.h"
#include "shared/pool_stats.h"

#include "common/pg_headers.h"

namespace bgw {

ProxyShared *proxy_shared = nullptr;

static constexpr uint32 kSharedMagic = 0x42475053; /* "BGPS" */
static constexpr const char *kSegmentName = "bgw_proxy";

static shmem_request_hook_type prev_shmem_request_hook = nullptr;
static shmem_startup_hook_type prev_shmem_startup_hook = nullptr;

static Size align64(Size s) { return TYPEALIGN(64, s); }

static Size request_ring_size() { return MAXALIGN((Size) guc_request_buffer_kb * 1024); }
static Size response_ring_size() { return MAXALIGN((Size) guc_response_buffer_kb * 1024); }

/* The one place the layout is computed: offsets filled into `out` if given. */
static Size segment_size(ProxyShared *out)
{
    Size off = align64(sizeof(ProxyShared));
    Size workers_off = off;
    off = add_size(off, align64(mul_size(guc_workers, sizeof(WorkerState))));
    Size queues_off = off;
    off = add_size(off, mul_size(guc_workers, align64(sizeof(SubmitQueue))));
    Size slots_off = off;
    off = add_size(off, align64(mul_size(MaxBackends, sizeof(RequestSlot))));
    Size rings_off = off;
    off = add_size(off, mul_size(MaxBackends, request_ring_size() + response_ring_size()));
    Size clusters_off = off;
    off = add_size(off, mul_size(guc_max_clusters, MAXALIGN(sizeof(SharedCluster))));
    Size pool_stats_off = align64(off);
    off = add_size(pool_stats_off, pool_stats_size());
    Size nodes_off = align64(off);
    off = add_size(nodes_off, node_table_size());
    Size lends_off = align64(off);
    off = add_size(lends_off, lend_table_size());
    if (out) {
        out->lends_off = lends_off;
        out->nodes_off = nodes_off;
        out->nnodes = guc_max_nodes;
        out->pool_stats_off = pool_stats_off;
        out->npool_stats = pool_stats_per_worker() * guc_workers;
        out->clusters_off = clusters_off;
        out->nclusters = guc_max_clusters;
        out->workers_off = workers_off;
        out->queues_off = queues_off;
        out->slots_off = slots_off;
        out->rings_off = rings_off;
    }
    return off;
}

static void shmem_request(void)
{
    if (prev_shmem_request_hook)
        prev_shmem_request_hook();
    RequestAddinShmemSpace(segment_size(nullptr));
    RequestNamedLWLockTranche(kSegmentName, 1);
}

static void shmem_startup(void)
{
    bool found;

    if (prev_shmem_startup_hook)
        prev_shmem_startup_hook();

    /* reset first: after a crash-restart nothing from before may be used */
    proxy_shared = nullptr;

    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    auto *sh = static_cast<ProxyShared *>(ShmemInitStruct(kSegmentName, segment_size(nullptr), &found));
    if (!found) {
        memset(sh, 0, sizeof(ProxyShared));
        sh->magic = kSharedMagic;
        sh->nworkers = guc_workers;
        sh->nwait_channels = guc_debug_wait_channels;
        sh->nslots = MaxBackends;
        sh->request_ring_size = request_ring_size();
        sh->response_ring_size = response_ring_size();
        sh->lock = &(GetNamedLWLockTranche(kSegmentName))->lock;
        segment_size(sh);
        pg_atomic_init_u64(&sh->submitted, 0);
        pg_atomic_init_u64(&sh->completed, 0);
        pg_atomic_init_u64(&sh->queue_full_waits, 0);
        pg_atomic_init_u64(&sh->picked_up, 0);
        pg_atomic_init_u64(&sh->withdrawn, 0);
        pg_atomic_init_u64(&sh->peak_depth, 0);
        pg_atomic_init_u64(&sh->slot_waits, 0);
        pg_atomic_init_u64(&sh->submitted_base, 0);
        pg_atomic_init_u64(&sh->completed_base, 0);
        pg_atomic_init_u64(&sh->stats_reset, uint64(GetCurrentTimestamp()));
        pg_atomic_init_u64(&sh->drop_epoch, 0);
        pg_atomic_init_u32(&sh->npauses, 0);
        for (PauseEntry &p : sh->pauses) {
            p.used = false;
            pg_atomic_init_u64(&p.generation, 0);
            pg_atomic_init_u32(&p.waiting, 0);
        }
        ConditionVariableInit(&sh->pause_cv);
        ConditionVariableInit(&sh->quiet_cv);
        pg_atomic_init_u64(&sh->command_epoch, 0);
        ConditionVariableInit(&sh->command_cv);

        proxy_shared = sh;
        for (int i = 0; i < sh->nworkers; i++) {
            WorkerState *w = worker_state(i);
            memset(w, 0, sizeof(WorkerState));
            pg_atomic_init_u32(&w->pid, 0);
            pg_atomic_init_u32(&w->incarnation, 0);
            pg_atomic_init_u32(&w->run_state, WORKER_STOPPED);
            pg_atomic_init_u32(&w->conns_open, 0);
            pg_atomic_init_u32(&w->conns_idle, 0);
            pg_atomic_init_u32(&w->conns_active, 0);
            pg_atomic_init_u32(&w->conns_connecting, 0);
            pg_atomic_init_u32(&w->in_flight, 0);
            pg_atomic_init_u32(&w->load, 0);
            pg_atomic_init_u64(&w->served, 0);
            pg_atomic_init_u64(&w->connects, 0);
            pg_atomic_init_u32(&w->returns, 0);
            pg_atomic_init_u64(&w->command_seen, 0);

            SubmitQueue *q = SubmitQueue::create_at(worker_queue(i));
            if (!q->is_lock_free())
                ereport(FATAL, (errmsg("bgw_proxy: the submission queue is not lock-free on this platform")));
        }
        for (int i = 0; i < sh->nclusters; i++)
            shared_cluster(i)->used = false;
        pool_stats_init();
        node_table_init();
        lend_table_init();
        for (int i = 0; i < sh->nslots; i++) {
            RequestSlot *s = request_slot(i);
            memset(s, 0, sizeof(RequestSlot));
            pg_atomic_init_u32(&s->state, SLOT_FREE);
            pg_atomic_init_u32(&s->cancel, 0);
            pg_atomic_init_u32(&s->charged, 0);
            pg_atomic_init_u64(&s->gate_cluster, 0);
            pg_atomic_init_u64(&s->gate_parts, 0);
            pg_atomic_init_u32(&s->gate_in, 0);
            pg_atomic_init_u32(&s->direct_wait_stat, 0);
            pg_atomic_init_u64(&s->direct_wait_since, 0);
        }
    }
    LWLockRelease(AddinShmemInitLock);
    proxy_shared = sh;
}

void shmem_register_hooks(void)
{
    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = shmem_request;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = shmem_startup;
}

static char *base() { return reinterpret_cast<char *>(proxy_shared); }

WorkerState *worker_state(int i)
{
    return reinterpret_cast<WorkerState *>(base() + proxy_shared->workers_off) + i;
}

SubmitQueue *worker_queue(int i)
{
    return reinterpret_cast<SubmitQueue *>(base() + proxy_shared->queues_off +
                                           (Size) i * align64(sizeof(SubmitQueue)));
}

RequestSlot *request_slot(int i)
{
    return reinterpret_cast<RequestSlot *>(base() + proxy_shared->slots_off) + i;
}

SharedCluster *shared_cluster(int i)
{
    return reinterpret_cast<SharedCluster *>(base() + proxy_shared->clusters_off +
                                             (Size) i * MAXALIGN(sizeof(SharedCluster)));
}

void *slot_request_ring(int i)
{
    Size per_slot = proxy_shared->request_ring_size + proxy_shared->response_ring_size;
    return base() + proxy_shared->rings_off + (Size) i * per_slot;
}

void *slot_response_ring(int i)
{
    return static_cast<char *>(slot_request_ring(i)) + proxy_shared->request_ring_size;
}

uint64 queue_depth(void)
{
    uint64 out = pg_atomic_read_u64(&proxy_shared->picked_up) + pg_atomic_read_u64(&proxy_shared->withdrawn);
    uint64 in = pg_atomic_read_u64(&proxy_shared->submitted);
    return in > out ? in - out : 0;
}

uint64 cluster_gate_hash(const char *name)
{
    uint64 h = hash_bytes_extended(reinterpret_cast<const unsigned char *>(name), int(strlen(name)), 0);
    return h ? h : 1;
}

void require_preloaded(void)
{
    if (proxy_shared == nullptr)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("bgw_proxy must be loaded via shared_preload_libraries"),
                        errhint("Add bgw_proxy to shared_preload_libraries in postgresql.conf and "
                                "restart the server.")));
}

} // namespace bgw
