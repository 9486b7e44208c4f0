/*
 * shmem.h — the named shared-memory segment "bgw_proxy" and its contract.
 *
 * Layout (one ShmemInitStruct allocation, sized in the shmem_request hook):
 *
 *   ProxyShared      control header                       (1)
 *   WorkerState      per worker                           (bgw_proxy.workers)
 *   SubmitQueue      per worker, 64-byte aligned          (bgw_proxy.workers)
 *   RequestSlot      per possible backend                 (MaxBackends)
 *   ring memory      per slot: request area + response ring
 *   SharedCluster    per cluster cache slot               (bgw_proxy.max_clusters)
 *   PoolStat         per tracked pool, a region per worker (bgw_proxy.max_tracked_pools;
 *                    its contract is in pool_stats.h)
 *   NodeEntry        per node of a multi-host partition (bgw_proxy.max_nodes;
 *                    its contract is in node_table.h)
 *   LendEntry        per connection a worker may lend to backends, a region of
 *                    kLendPerWorker per worker (contract in lend_table.h)
 *
 * Who writes what, and how it is read — the protocol every process follows:
 *
 * ProxyShared: written once by the postmaster in the startup hook, read-only
 *   afterwards. Its counters are atomics (any process adds, readers need no
 *   lock). `lock` (our named LWLock tranche) serialises worker registration
 *   (WorkerState.pid/proc/incarnation changes) against readers that need a
 *   consistent picture of a worker (the stat views).
 *
 * WorkerState: every field is written only by the worker it describes (while
 *   it runs, or in its exit callback), read by anyone. pid and proc are
 *   published under `lock` in exclusive mode; backends that only want to
 *   wake the worker read proc with a read barrier after seeing pid != 0.
 *   Counters are single-writer atomics.
 *
 * SubmitQueue: lock-free. Producers: backends. Consumer: the owning worker.
 *
 * RequestSlot: slot i belongs to the backend with BackendId i + 1 — one call
 *   in flight per backend. Its `state` is an atomic state machine and says
 *   who may touch the rest of the slot:
 *
 *     FREE ----backend fills, then--> SUBMITTED   (backend; then pushes a ticket)
 *     SUBMITTED --CAS by worker-----> RUNNING     (worker picks it up)
 *     SUBMITTED --CAS by backend----> FREE        (backend gave up before pickup)
 *     RUNNING --worker finishes-----> DONE        (worker; then sets owner's latch)
 *     DONE ---------backend---------> FREE        (backend, before next call)
 *
 *   FREE / SUBMITTED: the owning backend writes the descriptive fields; the
 *   worker reads them only after winning the SUBMITTED->RUNNING CAS (the
 *   pg_atomic CAS is a full barrier). RUNNING: the worker owns the rings'
 *   worker ends (and reads a plain request from the request area); the
 *   backend owns its ends and may set `cancel` at any time. The worker
 *   names itself the response ring's sender only right before its first
 *   send (naming sets the backend's latch: done at pickup, it would wake the
 *   backend with nothing to read), or at exit, to detach from it.
 *   DONE: the worker has detached and will not touch the slot again.
 *   A backend that leaves (error, cancel, exit) while RUNNING sets `cancel`
 *   and wakes the worker; the slot stays RUNNING until the worker releases
 *   it, and the backend's next call waits for that.
 *
 * Pauses (bgw_proxy_pause, see "Pauses and pool commands" below) add three
 * fields to a slot, the cluster gate, written only by the owning backend
 * and read by a pausing backend without a lock.
 */
#pragma once

#include "shared/submit_queue.hpp"

#include "common/pg_headers.h"

namespace bgw {

enum SlotState : uint32 {
    SLOT_FREE = 0,
    SLOT_SUBMITTED = 1,
    SLOT_RUNNING = 2,
    SLOT_DONE = 3,
};

struct RequestSlot {
    pg_atomic_uint32 state;      /* SlotState; see the state machine above */
    pg_atomic_uint32 cancel;     /* backend sets 1: abandon the call */
    uint32 generation;           /* backend, while FREE; matches the ticket */
    int worker;                  /* backend, while FREE: which worker's queue; the
                                  * worker that wins the pickup CAS then writes its
                                  * own index (a stale ticket may route a call to
                                  * another worker than the one addressed) */
    uint32 worker_incarnation;   /* worker, at pickup */
    pg_atomic_uint32 charged;    /* 1 + the worker whose `load` the backend raised
                                  * for this call (0: none), written while FREE;
                                  * whoever ends the call (counts it in `completed`)
                                  * swaps it to 0 and lowers that load: an atomic
                                  * exchange, so two enders cannot both lower it */
    PGPROC *owner;               /* backend, while FREE: whose latch to set */
    Oid roleid;                  /* backend, while FREE: role of the call */
    Oid dbid;                    /* backend, while FREE */
    uint32 request_len;          /* backend, while FREE: > 0, the request lies in the
                                  * slot's request area as plain bytes (it fitted);
                                  * 0, the area is an shm_mq the request streams
                                  * through. The worker reads either after pickup. */
    int gave_up;                 /* worker: 0 at pickup; before it releases the slot
                                  * without a final message (DONE's write barrier),
                                  * why: ERRCODE_OUT_OF_MEMORY, else another SQLSTATE
                                  * (MAKE_SQLSTATE). Read by the backend after DONE:
                                  * out of memory is reported as 53200, the rest as
                                  * "gave up" (08006) */

    /* The cluster gate (backend/cluster_gate.h): which cluster and
     * partitions this backend's current or last call is for. Written by the
     * owning backend only, while the slot is FREE or DONE (never while a
     * previous call still holds it), read by pausing backends.
     *   gate_cluster: cluster_gate_hash() of the cluster name; 0 for a
     *                 CONNECT call (written before the slot is published).
     *   gate_parts:   bit (p % 64) for each partition p the call runs on;
     *                 all bits while the call is still being routed.
     *   gate_in:      1 from before the configuration is read until the
     *                 call has ended or was abandoned.
     * A call counts as running for a pause of its cluster (and a partition
     * whose bit is set) while gate_in is 1, or while the slot is SUBMITTED
     * or RUNNING: an abandoned call runs until its worker releases it. The
     * backend writes gate_cluster, gate_parts, then gate_in, then issues a
     * full barrier and reads ProxyShared.npauses; a pausing backend adds to
     * npauses (a full barrier) and then reads the slots. So either the
     * backend sees the pause, or the pauser sees the call. */
    pg_atomic_uint64 gate_cluster;
    pg_atomic_uint64 gate_parts;
    pg_atomic_uint32 gate_in;

    /* A direct call of this backend waiting for a pooled connection
     * (backend/direct_call.cpp), for pg_stat_bgw_proxy.longest_wait.
     * Written by the owning backend only: since when it waits, then (after
     * a write barrier) 1 + the pool's statistics entry; 0 again when it
     * stops. Read by the view: the entry, a read barrier, then since (a
     * wait that has just ended may still be seen). */
    pg_atomic_uint32 direct_wait_stat;
    pg_atomic_uint64 direct_wait_since; /* TimestampTz */
};

enum WorkerRunState : uint32 {
    WORKER_STOPPED = 0,
    WORKER_IDLE = 1,   /* waiting for events with nothing in flight */
    WORKER_BUSY = 2,   /* at least one call in flight */
};

struct WorkerState {
    pg_atomic_uint32 pid;          /* 0 while not running */
    pg_atomic_uint32 incarnation;  /* +1 at every start */
    pg_atomic_uint32 run_state;    /* WorkerRunState */
    PGPROC *proc;                  /* for SetLatch by backends */
    TimestampTz started_at;        /* under lock, like pid */

    /* gauges (single writer: this worker, once per loop iteration) */
    pg_atomic_uint32 conns_open;
    pg_atomic_uint32 conns_idle;
    pg_atomic_uint32 conns_active;
    pg_atomic_uint32 conns_connecting;
    /* single writer: this worker, at pickup (+1) and when the call ends (-1),
     * before the final message goes out; reset to 0 at worker start */
    pg_atomic_uint32 in_flight;
    /* calls addressed to this worker and not yet ended, queued or running:
     * a backend adds 1 before it publishes a call (RequestSlot.charged),
     * whoever ends the call subtracts it. Read by backends choosing a
     * worker (workers.h). */
    pg_atomic_uint32 load;
    /* calls served: added by this worker as its calls end, and by a
     * backend for each direct call on a connection this worker lent it
     * (lend_table.h) */
    pg_atomic_uint64 served;
    /* single writer: this worker */
    pg_atomic_uint64 connects;
    /* 1: a backend gave back a lent connection this worker wants (set
     * before the backend sets the latch; swapped to 0 by the worker at the
     * top of a turn, which then takes back what it waits for) */
    pg_atomic_uint32 returns;
    /* the last ProxyShared.command_epoch this worker has carried out
     * (single writer: this worker, after applying the commands; set to the
     * epoch current at its start, since a new worker holds no connection) */
    pg_atomic_uint64 command_seen;
};

/*
 * A cluster configuration loaded through the configuration functions,
 * shared by every backend of the database (slot i of the cluster cache).
 * All fields are written and read under ProxyShared.lock: exclusive to
 * write a slot, shared to read one. `data` is the configuration serialized
 * by cluster.cpp (wire format primitives).
 */
constexpr Size kClusterSlotData = 16 * 1024;

struct SharedCluster {
    bool used;
    Oid dbid;
    char name[NAMEDATALEN];
    int32 version;
    uint64 stamp;                /* when stored, for replacing the oldest */
    uint32 len;
    char data[kClusterSlotData];
};

constexpr int kDropRing = 8;

/*
 * Pauses and pool commands (bgw_proxy_pause / _resume / _reconnect /
 * _disconnect_idle; backend/operations.cpp, backend/cluster_gate.cpp,
 * worker/retirement.cpp).
 *
 * PauseEntry: one per pause in force, of a cluster (partition -1) or of one
 * partition, server-wide (every database and role). `lock` exclusive to
 * take, change or free an entry, shared to read one; `generation` is also
 * read without the lock by the calls waiting for the entry to go (it grows
 * when the entry is freed), and `waiting` is an atomic that those calls
 * add to and subtract from themselves. ProxyShared.npauses counts entries
 * in use: changed under `lock` exclusive with an atomic (a full barrier),
 * read by every cluster call without a lock (0: nothing to look up).
 *
 * PoolCommand: a ring like the DROP DATABASE one. The backend takes `lock`
 * exclusively, writes entry (epoch + 1) % kCommandRing and then raises
 * command_epoch, wakes the workers and waits (pause_cv's sibling
 * command_cv) until every running worker's WorkerState.command_seen has
 * reached it. A worker reads, under `lock` shared, the commands of every
 * epoch it has not seen; if more than kCommandRing went by, it retires
 * every connection it knows a cluster for and closes its idle ones (more
 * than was asked, never less).
 */
constexpr int kMaxPauses = 32;
constexpr int kCommandRing = 32;

enum PauseState : uint32 {
    PAUSE_PAUSING = 1,           /* new calls wait; calls in flight still running */
    PAUSE_PAUSED = 2,            /* quiet: bgw_proxy_pause() returned */
};

struct PauseEntry {
    bool used;
    uint32 state;                /* PauseState */
    char cluster[NAMEDATALEN];
    uint64 cluster_hash;         /* cluster_gate_hash(cluster) */
    int32 partition;             /* -1: the whole cluster */
    int32 paused_by;             /* pid of the session that paused */
    TimestampTz paused_at;
    pg_atomic_uint64 generation; /* +1 whenever the entry is freed */
    pg_atomic_uint32 waiting;    /* calls waiting for this entry to go (each adds 1 and
                                  * subtracts it when it leaves, also after the entry
                                  * was freed: never reset, so it cannot wrap) */
};

enum PoolCommandKind : uint32 {
    POOL_RECONNECT = 1,          /* retire the connections of a cluster (or one partition) */
    POOL_DISCONNECT_IDLE = 2,    /* close every idle connection */
};

struct PoolCommand {
    uint32 kind;                 /* PoolCommandKind */
    int32 partition;             /* POOL_RECONNECT: -1 for every partition */
    char cluster[NAMEDATALEN];   /* POOL_RECONNECT */
};

struct ProxyShared {
    uint32 magic;
    int nworkers;
    int nwait_channels;          /* bgw_proxy.debug_wait_channels (lend_table.h) */
    int nslots;
    Size request_ring_size;
    Size response_ring_size;
    LWLock *lock;

    /* offsets from the start of this struct */
    Size workers_off, queues_off, slots_off, rings_off, clusters_off, pool_stats_off, nodes_off, lends_off;
    int nnodes;                  /* NodeEntry entries (bgw_proxy.max_nodes) */
    int nclusters;
    int npool_stats;             /* entries in all; a region of npool_stats / nworkers per worker */
    uint64 cluster_stamp;        /* under lock: last SharedCluster.stamp given */

    /* queue counters: any process adds. submitted: a backend, per call
     * handed to a worker; completed: whoever ends the call (the worker when
     * it releases the slot, also on exit; a backend that takes back a call
     * no worker picked up) — so submitted - completed is calls in flight. */
    pg_atomic_uint64 submitted;
    pg_atomic_uint64 completed;
    pg_atomic_uint64 queue_full_waits;
    /* depth of the queues = submitted - picked_up - withdrawn. picked_up:
     * the worker that wins a SUBMITTED->RUNNING CAS; withdrawn: a backend
     * that takes back a call no worker picked up. */
    pg_atomic_uint64 picked_up;
    pg_atomic_uint64 withdrawn;
    pg_atomic_uint64 peak_depth;   /* backends raise it (CAS) after pushing a ticket */
    pg_atomic_uint64 slot_waits;   /* a backend whose slot was still held by its
                                    * previous (cancelled) call */
    /* bgw_proxy_stat_reset(): whoever resets writes these; the queue view
     * shows submitted/completed since the reset, the raw counters keep
     * serving the depth and in-flight arithmetic */
    pg_atomic_uint64 submitted_base;
    pg_atomic_uint64 completed_base;
    pg_atomic_uint64 stats_reset;  /* TimestampTz */

    /* DROP DATABASE: the backend about to drop takes `lock` exclusively,
     * increments drop_epoch and writes the name into ring entry
     * epoch % kDropRing, then wakes the workers. A worker that sees a new
     * epoch reads, under `lock` shared, the names of every epoch it has not
     * seen (at most kDropRing back) and retires its connections to them. */
    char drop_names[kDropRing][NAMEDATALEN];
    pg_atomic_uint64 drop_epoch;

    /* pauses and pool commands: the contract is above PauseEntry */
    pg_atomic_uint32 npauses;
    PauseEntry pauses[kMaxPauses];
    ConditionVariable pause_cv;    /* broadcast when an entry is freed: waiting calls */
    ConditionVariable quiet_cv;    /* broadcast by a call leaving the gate while
                                    * npauses > 0: pausing backends */
    PoolCommand commands[kCommandRing];
    pg_atomic_uint64 command_epoch;
    ConditionVariable command_cv;  /* broadcast by a worker that raised command_seen */
};

/* Set in every process by the shmem startup hook; NULL when not preloaded. */
extern ProxyShared *proxy_shared;

void shmem_register_hooks(void);

WorkerState *worker_state(int i);
SubmitQueue *worker_queue(int i);
RequestSlot *request_slot(int i);
SharedCluster *shared_cluster(int i);
void *slot_request_ring(int i);
void *slot_response_ring(int i);

/* Calls submitted and not yet picked up by a worker (or taken back). Reads
 * what leaves the queues before what enters, so a count caught in between
 * makes it look smaller, never negative. */
uint64 queue_depth(void);

/* The gate's identity of a cluster name (never 0). */
uint64 cluster_gate_hash(const char *name);

/* Errors out with a hint unless bgw_proxy was loaded at server start. */
void require_preloaded(void);

} // namespace bgw
