/*
 * cluster_gate.cpp — see cluster_gate.h; the protocol is in shmem.h.
 */
#include "backend/call.h"
#include "backend/cluster_gate.h"
#include "common/guc.h"
#include "shared/shmem.h"

#include "common/pg_headers.h"

extern "C" {
#include "utils/inval.h"
}

namespace bgw {

namespace {

int depth = 0;                  /* gate_enter() calls not yet left */
RequestSlot *slot = nullptr;    /* this backend's, while depth > 0 */
char gate_name[NAMEDATALEN];    /* the outermost call's cluster */
uint64 gate_hash = 0;
bool exit_hook_registered = false;
PauseEntry *waiting_on = nullptr; /* the entry whose `waiting` we added to */

void stop_waiting(void)
{
    if (waiting_on)
        pg_atomic_fetch_sub_u32(&waiting_on->waiting, 1);
    waiting_on = nullptr;
}

/* Publish the call as running for the cluster, every partition; then a
 * full barrier before npauses is read (shmem.h). */
void publish(void)
{
    pg_atomic_write_u64(&slot->gate_parts, ~uint64(0));
    pg_atomic_write_u64(&slot->gate_cluster, gate_hash);
    pg_atomic_write_u32(&slot->gate_in, 1);
    pg_memory_barrier();
}

/* The call no longer runs; a pausing backend may be waiting for that. */
void unpublish(void)
{
    pg_atomic_write_u32(&slot->gate_in, 0);
    pg_memory_barrier();
    if (pg_atomic_read_u32(&proxy_shared->npauses) > 0)
        ConditionVariableBroadcast(&proxy_shared->quiet_cv);
}

void exit_hook(int code, Datum arg)
{
    (void) code;
    (void) arg;
    stop_waiting();
    if (depth > 0 && slot)
        unpublish();
    depth = 0;
}

struct Hold {
    int entry = -1;              /* -1: nothing holds the call */
    uint64 generation = 0;
    int32 partition = -1;
};

/* The pause that holds the call: of the whole cluster, or (n > 0) of one
 * of its partitions. */
Hold find_hold(const int *partitions, int n)
{
    Hold h;
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    for (int i = 0; i < kMaxPauses && h.entry < 0; i++) {
        PauseEntry *p = &proxy_shared->pauses[i];
        if (!p->used || p->cluster_hash != gate_hash || strcmp(p->cluster, gate_name) != 0)
            continue;
        bool holds = p->partition < 0;
        for (int k = 0; k < n && !holds; k++)
            holds = partitions[k] == p->partition;
        if (holds) {
            h.entry = i;
            h.generation = pg_atomic_read_u64(&p->generation);
            h.partition = p->partition;
        }
    }
    LWLockRelease(proxy_shared->lock);
    return h;
}

void raise_still_paused(const Hold &h)
{
    ereport(ERROR,
            (errcode(ERRCODE_LOCK_NOT_AVAILABLE),
             h.partition < 0 ? errmsg("bgw_proxy: cluster \"%s\" is paused", gate_name)
                             : errmsg("bgw_proxy: partition %d of cluster \"%s\" is paused", h.partition,
                                      gate_name),
             errdetail("The call waited for bgw_proxy_resume() longer than bgw_proxy.pool_wait_timeout (%d ms).",
                       guc_pool_wait_timeout_ms),
             errhint("See pg_stat_bgw_proxy_clusters; bgw_proxy_resume('%s') lets the calls through.", gate_name)));
}

/* Wait until the entry that holds the call is freed (its generation
 * grows). Condition-variable waiters are woken in the order they came. */
void wait_for_resume(const Hold &h)
{
    PauseEntry *p = &proxy_shared->pauses[h.entry];
    TimestampTz start = GetCurrentTimestamp();
    pg_atomic_fetch_add_u32(&p->waiting, 1);
    waiting_on = p;
    PG_TRY();
    {
        ConditionVariablePrepareToSleep(&proxy_shared->pause_cv);
        while (pg_atomic_read_u64(&p->generation) == h.generation) {
            long timeout = 1000;
            if (guc_pool_wait_timeout_ms > 0) {
                long left = guc_pool_wait_timeout_ms - TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
                if (left <= 0)
                    raise_still_paused(h);
                timeout = Min(timeout, left);
            }
            /* serves interrupts: statement_timeout, cancel, termination */
            (void) ConditionVariableTimedSleep(&proxy_shared->pause_cv, timeout, PG_WAIT_EXTENSION);
        }
        ConditionVariableCancelSleep();
    }
    PG_CATCH();
    {
        stop_waiting();
        ConditionVariableCancelSleep();
        PG_RE_THROW();
    }
    PG_END_TRY();
    stop_waiting();

    /* the configuration may have changed meanwhile: see ALTER SERVER and
     * user mapping changes now. A transaction that reads with one snapshot
     * would still see the configuration as it was before the pause. */
    AcceptInvalidationMessages();
    if (IsolationUsesXactSnapshot())
        ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                        errmsg("could not serialize access: cluster \"%s\" was paused during this transaction",
                               gate_name),
                        errdetail("Its configuration may have changed since the transaction's snapshot was "
                                  "taken."),
                        errhint("Retry the transaction.")));
}

} // namespace

void gate_enter(const char *cluster)
{
    if (depth++ > 0)
        return;
    if (!exit_hook_registered) {
        before_shmem_exit(exit_hook, 0);
        exit_hook_registered = true;
    }
    strlcpy(gate_name, cluster, sizeof(gate_name));
    gate_hash = cluster_gate_hash(gate_name);
    /* a previous, abandoned call still published in the slot runs until
     * its worker releases it: ours may only be published after that */
    slot = call_free_slot();
    for (;;) {
        /* a pause in force is seen before publishing: while the cluster is
         * paused, arriving calls never show as running (a pause being
         * taken right now is caught by the check after publishing) */
        if (pg_atomic_read_u32(&proxy_shared->npauses) > 0) {
            Hold h = find_hold(nullptr, 0);
            if (h.entry >= 0) {
                wait_for_resume(h);
                continue;
            }
        }
        publish();
        if (pg_atomic_read_u32(&proxy_shared->npauses) == 0)
            return;
        Hold h = find_hold(nullptr, 0);
        if (h.entry < 0)
            return;
        unpublish();
        wait_for_resume(h);
    }
}

bool gate_admit(const int *partitions, int n)
{
    if (depth != 1)
        return true;
    uint64 mask = 0;
    for (int k = 0; k < n; k++)
        mask |= uint64(1) << (partitions[k] & 63);
    pg_atomic_write_u64(&slot->gate_parts, mask);
    /* a pause taken after gate_enter published the call waits for it:
     * only one taken before can hold it here */
    if (pg_atomic_read_u32(&proxy_shared->npauses) == 0)
        return true;
    Hold h = find_hold(partitions, n);
    if (h.entry < 0)
        return true;
    unpublish();
    depth = 0;
    wait_for_resume(h);
    return false;
}

int gate_depth(void) { return depth; }

void gate_leave_to(int d)
{
    if (depth <= d)
        return;
    if (d == 0 && slot)
        unpublish();
    depth = d;
}

} // namespace bgw

namespace bgw {

int gate_calls_running(uint64 hash, int32 partition)
{
    int n = 0;
    uint64 bit = partition < 0 ? ~uint64(0) : uint64(1) << (partition & 63);
    for (int i = 0; i < proxy_shared->nslots; i++) {
        RequestSlot *s = request_slot(i);
        if (pg_atomic_read_u64(&s->gate_cluster) != hash)
            continue;
        pg_read_barrier();
        if ((pg_atomic_read_u64(&s->gate_parts) & bit) == 0)
            continue;
        uint32 st = pg_atomic_read_u32(&s->state);
        if (pg_atomic_read_u32(&s->gate_in) != 0 || st == SLOT_SUBMITTED || st == SLOT_RUNNING)
            n++;
    }
    return n;
}

} // namespace bgw
