/*
 * operations.cpp — pausing, resuming and reconnecting clusters from SQL:
 * bgw_proxy_pause(), bgw_proxy_resume(), bgw_proxy_reconnect(),
 * bgw_proxy_disconnect_idle(). The view pg_stat_bgw_proxy_clusters is in
 * stat_views.cpp.
 *
 * The pause entries and the pool command ring are in shared memory; their
 * contract is in shmem.h (PauseEntry, PoolCommand, the gate fields of
 * RequestSlot). Calls meet the pauses at their cluster's gate
 * (cluster_gate.cpp); workers carry out the commands (worker/retirement.cpp).
 *
 * A pause: new calls of the cluster (or partition) wait at the gate; the
 * pausing session waits until no call of it runs, then the entry is PAUSED
 * and the function returns. On any error before that (its timeout, a
 * cancel, the session's exit) the entry is freed: a failed pause never
 * leaves a cluster held. A resume first has every worker retire the
 * connections it made for the paused cluster or partition, and only then
 * frees the entries: the calls it lets through find no connection made
 * before, so none runs with the configuration as it was.
 *
 * Backend code in the PostgreSQL style (ereport, no C++ destructors).
 */
#include "shared/shmem.h"
#include "shared/workers.h"
#include "common/guc.h"
#include "backend/cluster_gate.h"

#include "common/pg_headers.h"

extern "C" {
#include "datatype/timestamp.h"
#include "utils/timestamp.h"
PG_FUNCTION_INFO_V1(bgw_proxy_pause_1_2);
PG_FUNCTION_INFO_V1(bgw_proxy_resume_1_2);
PG_FUNCTION_INFO_V1(bgw_proxy_reconnect_1_2);
PG_FUNCTION_INFO_V1(bgw_proxy_disconnect_idle_1_2);
}

using namespace bgw;

namespace {

/* The pause this session is taking, until it is PAUSED (or freed). */
int pausing_entry = -1;
uint64 pausing_generation = 0;
bool exit_hook_registered = false;

const char *cluster_arg(FunctionCallInfo fcinfo, int argno)
{
    if (PG_ARGISNULL(argno))
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("bgw_proxy: the cluster name must not be NULL")));
    char *name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
    if (name[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("bgw_proxy: the cluster name is empty")));
    if (strlen(name) >= NAMEDATALEN)
        ereport(ERROR, (errcode(ERRCODE_NAME_TOO_LONG), errmsg("bgw_proxy: the cluster name is too long"),
                        errdetail("A cluster name has at most %d bytes.", NAMEDATALEN - 1)));
    return name;
}

bool same_scope(const PauseEntry *p, uint64 hash, const char *cluster)
{
    return p->used && p->cluster_hash == hash && strcmp(p->cluster, cluster) == 0;
}

/* Free entry i if it is still the one of that generation: the calls
 * waiting for it go on. Under `lock` exclusive. */
bool free_entry_locked(int i, uint64 generation)
{
    PauseEntry *p = &proxy_shared->pauses[i];
    if (!p->used || pg_atomic_read_u64(&p->generation) != generation)
        return false;
    p->used = false;
    pg_atomic_fetch_add_u64(&p->generation, 1);
    pg_atomic_fetch_sub_u32(&proxy_shared->npauses, 1);
    return true;
}

/* The pause being taken is given up (error, exit). Must not fail. */
void lift_pausing(void)
{
    if (pausing_entry < 0)
        return;
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    bool freed = free_entry_locked(pausing_entry, pausing_generation);
    LWLockRelease(proxy_shared->lock);
    pausing_entry = -1;
    if (freed)
        ConditionVariableBroadcast(&proxy_shared->pause_cv);
}

void exit_hook(int code, Datum arg)
{
    (void) code;
    (void) arg;
    if (proxy_shared)
        lift_pausing();
}

/* Post a command to the workers; under `lock` exclusive. Its epoch. */
uint64 post_command_locked(PoolCommandKind kind, const char *cluster, int32 partition)
{
    uint64 epoch = pg_atomic_read_u64(&proxy_shared->command_epoch) + 1;
    PoolCommand *c = &proxy_shared->commands[epoch % kCommandRing];
    c->kind = kind;
    c->partition = partition;
    strlcpy(c->cluster, cluster ? cluster : "", NAMEDATALEN);
    pg_atomic_write_u64(&proxy_shared->command_epoch, epoch);
    return epoch;
}

/* Wake the workers and wait until each running one has carried out the
 * commands up to `epoch`. A worker that is not running holds no
 * connection (a new one starts past every command). */
void wait_for_workers(uint64 epoch, const char *what)
{
    for (int w = 0; w < proxy_shared->nworkers; w++)
        wake_worker(w);
    TimestampTz start = GetCurrentTimestamp();
    ConditionVariablePrepareToSleep(&proxy_shared->command_cv);
    for (;;) {
        int behind = -1;
        for (int w = 0; w < proxy_shared->nworkers && behind < 0; w++) {
            WorkerState *ws = worker_state(w);
            if (pg_atomic_read_u32(&ws->pid) != 0 && pg_atomic_read_u64(&ws->command_seen) < epoch)
                behind = w;
        }
        if (behind < 0)
            break;
        if (TimestampDifferenceMilliseconds(start, GetCurrentTimestamp()) > guc_worker_wait_timeout_ms)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("bgw_proxy worker %d did not carry out %s", behind, what),
                            errdetail("It did not answer within bgw_proxy.worker_wait_timeout (%d ms).",
                                      guc_worker_wait_timeout_ms),
                            errhint("Check pg_stat_bgw_proxy_workers and the server log, then try again.")));
        /* serves interrupts; a worker that exits is seen at the next turn */
        (void) ConditionVariableTimedSleep(&proxy_shared->command_cv, 100, PG_WAIT_EXTENSION);
    }
    ConditionVariableCancelSleep();
}

const char *scope_text(const char *cluster, int32 partition)
{
    return partition < 0 ? psprintf("cluster \"%s\"", cluster)
                         : psprintf("partition %d of cluster \"%s\"", partition, cluster);
}

/* Take a PAUSING entry for the scope, or fail if it overlaps one in force. */
int take_entry(const char *cluster, uint64 hash, int32 partition)
{
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    int free_slot = -1;
    for (int i = 0; i < kMaxPauses; i++) {
        PauseEntry *p = &proxy_shared->pauses[i];
        if (!p->used) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (!same_scope(p, hash, cluster) || (p->partition >= 0 && partition >= 0 && p->partition != partition))
            continue;
        int32 by = p->paused_by;
        int32 held = p->partition;
        const char *at = timestamptz_to_str(p->paused_at);
        LWLockRelease(proxy_shared->lock);
        ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                        errmsg("bgw_proxy: %s is already paused", scope_text(cluster, held)),
                        errdetail("Process %d paused it at %s.", by, at),
                        errhint("bgw_proxy_resume('%s') lifts the pauses of the cluster; see "
                                "pg_stat_bgw_proxy_clusters.", cluster)));
    }
    if (free_slot < 0) {
        LWLockRelease(proxy_shared->lock);
        ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
                        errmsg("bgw_proxy: too many pauses in force"),
                        errdetail("At most %d clusters or partitions can be paused at once.", kMaxPauses)));
    }
    PauseEntry *p = &proxy_shared->pauses[free_slot];
    p->used = true;
    p->state = PAUSE_PAUSING;
    strlcpy(p->cluster, cluster, NAMEDATALEN);
    p->cluster_hash = hash;
    p->partition = partition;
    p->paused_by = MyProcPid;
    p->paused_at = GetCurrentTimestamp();
    /* `waiting` is not reset: calls still leaving the entry's previous
     * use subtract what they added */
    pausing_entry = free_slot;
    pausing_generation = pg_atomic_read_u64(&p->generation);
    /* a full barrier: the slots are read after this (shmem.h) */
    pg_atomic_fetch_add_u32(&proxy_shared->npauses, 1);
    LWLockRelease(proxy_shared->lock);
    return free_slot;
}

/* Wait until no call of the scope runs; raises on timeout or when a
 * resume freed the entry first. */
void wait_until_quiet(const char *cluster, uint64 hash, int32 partition, long timeout_ms)
{
    PauseEntry *p = &proxy_shared->pauses[pausing_entry];
    TimestampTz start = GetCurrentTimestamp();
    ConditionVariablePrepareToSleep(&proxy_shared->quiet_cv);
    for (;;) {
        if (pg_atomic_read_u64(&p->generation) != pausing_generation)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("bgw_proxy: the pause of %s was lifted by bgw_proxy_resume() before the "
                                   "calls in flight ended", scope_text(cluster, partition))));
        int running = gate_calls_running(hash, partition);
        if (running == 0)
            break;
        long left = timeout_ms - TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
        if (left <= 0)
            ereport(ERROR, (errcode(ERRCODE_LOCK_NOT_AVAILABLE),
                            errmsg("bgw_proxy: %s was not quiet within %ld ms; the pause was lifted",
                                   scope_text(cluster, partition), timeout_ms),
                            errdetail_plural("%d call was still running.", "%d calls were still running.", running,
                                             running),
                            errhint("Calls in flight run to their end. Try again with a longer timeout, or find "
                                    "the long calls in pg_stat_activity.")));
        /* calls leaving the gate broadcast; a slot its worker releases
         * (an abandoned call) is seen at the next turn */
        (void) ConditionVariableTimedSleep(&proxy_shared->quiet_cv, Min(left, 10L), PG_WAIT_EXTENSION);
    }
    ConditionVariableCancelSleep();
}

} // namespace

/* bgw_proxy_pause(cluster text, timeout interval DEFAULT '30s', partition int DEFAULT NULL) */
Datum bgw_proxy_pause_1_2(PG_FUNCTION_ARGS)
{
    require_preloaded();
    const char *cluster = cluster_arg(fcinfo, 0);
    if (PG_ARGISNULL(1))
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("bgw_proxy: the pause timeout must not be NULL")));
    Interval *iv = PG_GETARG_INTERVAL_P(1);
    int64 usecs = iv->time + int64(iv->day) * USECS_PER_DAY + int64(iv->month) * DAYS_PER_MONTH * USECS_PER_DAY;
    if (usecs < 1000 || iv->month < 0 || iv->day < 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("bgw_proxy: the pause timeout must be at least 1 ms")));
    long timeout_ms = long(Min(usecs / 1000, int64(INT_MAX)));
    int32 partition = -1;
    if (!PG_ARGISNULL(2)) {
        partition = PG_GETARG_INT32(2);
        if (partition < 0)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("bgw_proxy: partition %d does not exist", partition),
                            errdetail("Partitions are numbered from 0.")));
    }
    if (!exit_hook_registered) {
        before_shmem_exit(exit_hook, 0);
        exit_hook_registered = true;
    }
    uint64 hash = cluster_gate_hash(cluster);

    int entry = take_entry(cluster, hash, partition);
    PG_TRY();
    {
        wait_until_quiet(cluster, hash, partition, timeout_ms);
    }
    PG_CATCH();
    {
        ConditionVariableCancelSleep();
        lift_pausing();
        PG_RE_THROW();
    }
    PG_END_TRY();

    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    PauseEntry *p = &proxy_shared->pauses[entry];
    if (p->used && pg_atomic_read_u64(&p->generation) == pausing_generation)
        p->state = PAUSE_PAUSED;
    LWLockRelease(proxy_shared->lock);
    pausing_entry = -1;
    PG_RETURN_VOID();
}

/* bgw_proxy_resume(cluster text): every pause of the cluster is lifted. */
Datum bgw_proxy_resume_1_2(PG_FUNCTION_ARGS)
{
    require_preloaded();
    const char *cluster = cluster_arg(fcinfo, 0);
    uint64 hash = cluster_gate_hash(cluster);
    int entries[kMaxPauses];
    uint64 generations[kMaxPauses];
    int n = 0;
    uint64 epoch = 0;

    /* the connections made for the paused scope are retired first, while
     * the calls still wait */
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    for (int i = 0; i < kMaxPauses; i++) {
        PauseEntry *p = &proxy_shared->pauses[i];
        if (!same_scope(p, hash, cluster))
            continue;
        entries[n] = i;
        generations[n++] = pg_atomic_read_u64(&p->generation);
        epoch = post_command_locked(POOL_RECONNECT, cluster, p->partition);
    }
    LWLockRelease(proxy_shared->lock);
    if (n == 0)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("bgw_proxy: cluster \"%s\" is not paused", cluster),
                        errhint("pg_stat_bgw_proxy_clusters shows the pauses in force.")));
    wait_for_workers(epoch, psprintf("the resume of cluster \"%s\"; the cluster is still paused", cluster));

    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    for (int k = 0; k < n; k++)
        (void) free_entry_locked(entries[k], generations[k]);
    LWLockRelease(proxy_shared->lock);
    ConditionVariableBroadcast(&proxy_shared->pause_cv);
    PG_RETURN_VOID();
}

/* bgw_proxy_reconnect(cluster text): the cluster's connections are closed
 * once idle (at once if they are) and opened again on demand. Returns when
 * every worker has done so: no call started afterwards gets one of them. */
Datum bgw_proxy_reconnect_1_2(PG_FUNCTION_ARGS)
{
    require_preloaded();
    const char *cluster = cluster_arg(fcinfo, 0);
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    uint64 epoch = post_command_locked(POOL_RECONNECT, cluster, -1);
    LWLockRelease(proxy_shared->lock);
    wait_for_workers(epoch, psprintf("the reconnect of cluster \"%s\"", cluster));
    PG_RETURN_VOID();
}

/* bgw_proxy_disconnect_idle(): every worker closes its idle connections. */
Datum bgw_proxy_disconnect_idle_1_2(PG_FUNCTION_ARGS)
{
    (void) fcinfo;
    require_preloaded();
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    uint64 epoch = post_command_locked(POOL_DISCONNECT_IDLE, nullptr, -1);
    LWLockRelease(proxy_shared->lock);
    wait_for_workers(epoch, "bgw_proxy_disconnect_idle()");
    PG_RETURN_VOID();
}
