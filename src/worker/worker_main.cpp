/*
 * worker_main.cpp — a bgw_proxy background worker's life: registration,
 * start, the loop (event_loop.cpp), and the exit callback that hands every
 * call in flight back to its backend.
 *
 * An error that escapes the loop ends the process (exit code 1, restarted
 * by the postmaster after 1 s); so does SIGTERM.
 */
#include "worker/worker.h"
#include "common/guc.h"
#include "worker/event_loop.h"
#include "worker/slot_calls.h"
#include "worker/worker_self.h"

#include "common/pg_headers.h"
#include "common/cxx_boundary.h"

extern "C" {
#include "postmaster/interrupt.h"
PGDLLEXPORT void bgw_proxy_worker_main(Datum main_arg);
}

namespace bgw {

Worker *self = nullptr;

namespace {

/* How long an exiting worker waits for its cancel requests to be taken by
 * the remotes (README "Behaviour": shutdown). */
constexpr std::chrono::milliseconds kExitCancelWait{1000};

/* Runs on every exit path (normal, error, SIGTERM): give back every slot. */
void worker_exit(int code, Datum arg)
{
    (void) code;
    (void) arg;
    if (!self)
        return;
    WorkerState *w = self->state;
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    w->proc = nullptr;
    pg_atomic_write_u32(&w->pid, 0);
    pg_atomic_write_u32(&w->run_state, WORKER_STOPPED);
    LWLockRelease(proxy_shared->lock);

    fail_calls_at_exit();
    try {
        /* Terminate messages (clean disconnects remotely), and cancels for
         * the statements still running, given kExitCancelWait at most:
         * whatever the remotes do, the worker exits in bounded time */
        self->pool.close_all(Clock::now() + kExitCancelWait);
    } catch (...) {
        /* exiting anyway: the remotes see the sockets close */
    }
    self->lender.stop(); /* what backends still hold, they close when done */
    self->stats.zero_gauges();

    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    pg_atomic_write_u32(&w->conns_open, 0);
    pg_atomic_write_u32(&w->conns_idle, 0);
    pg_atomic_write_u32(&w->conns_active, 0);
    pg_atomic_write_u32(&w->conns_connecting, 0);
    LWLockRelease(proxy_shared->lock);
}

/* Say we run: pid and proc under the lock, so readers see them together. */
void announce_start()
{
    WorkerState *w = self->state;
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    self->incarnation = pg_atomic_add_fetch_u32(&w->incarnation, 1);
    w->proc = MyProc;
    w->started_at = GetCurrentTimestamp();
    pg_atomic_write_u32(&w->in_flight, 0);
    pg_write_barrier();
    pg_atomic_write_u32(&w->pid, uint32(MyProcPid));
    pg_atomic_write_u32(&w->run_state, WORKER_IDLE);
    LWLockRelease(proxy_shared->lock);
}

} // namespace

void register_workers(void)
{
    for (int i = 0; i < guc_workers; i++) {
        BackgroundWorker w;
        memset(&w, 0, sizeof(w));
        /* a "connection" to no database: no catalog access, but a row in
         * pg_stat_activity with our wait events */
        w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
        w.bgw_start_time = BgWorkerStart_ConsistentState;
        w.bgw_restart_time = 1;
        strlcpy(w.bgw_library_name, "bgw_proxy", sizeof(w.bgw_library_name));
        strlcpy(w.bgw_function_name, "bgw_proxy_worker_main", sizeof(w.bgw_function_name));
        snprintf(w.bgw_name, sizeof(w.bgw_name), "bgw_proxy worker %d", i);
        strlcpy(w.bgw_type, "bgw_proxy worker", sizeof(w.bgw_type));
        w.bgw_main_arg = Int32GetDatum(i);
        RegisterBackgroundWorker(&w);
    }
}

} // namespace bgw

using namespace bgw;

void bgw_proxy_worker_main(Datum main_arg)
{
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
    BackgroundWorkerUnblockSignals();

    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
    pgstat_report_appname("bgw_proxy worker");

    int index = DatumGetInt32(main_arg);
    if (!proxy_shared || index < 0 || index >= proxy_shared->nworkers || !MyProc)
        ereport(FATAL, (errmsg("bgw_proxy worker %d: shared state not available", index)));

    cxx_entry([&] {
        self = new Worker();
        self->index = index;
        self->state = worker_state(index);
        self->stats.start(index);
        self->pool.set_observer(&self->stats);
        self->lender.start(index);
        self->pool.set_lender(&self->lender);
    });
    apply_limits();
    self->drop_epoch = pg_atomic_read_u64(&proxy_shared->drop_epoch);
    /* a new worker holds no connection: nothing posted before concerns it */
    self->command_epoch = pg_atomic_read_u64(&proxy_shared->command_epoch);
    pg_atomic_write_u64(&self->state->command_seen, self->command_epoch);
    announce_start();
    before_shmem_exit(worker_exit, 0);

    reclaim_orphaned_slots();
    ereport(LOG, (errmsg("bgw_proxy worker %d started", index)));

    cxx_entry([] { run_loop(); });

    /* SIGTERM: exit 1 so the postmaster starts us again (unless it is
     * shutting down); the exit callback has failed our calls. */
    ereport(LOG, (errmsg("bgw_proxy worker %d shutting down", index)));
    proc_exit(1);
}
