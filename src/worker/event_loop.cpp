/*
 * event_loop.cpp — see event_loop.h.
 *
 * Nothing in the loop blocks: rings are used with nowait, libpq is
 * non-blocking, cancels and DNS go to helper threads. PostgreSQL calls that
 * could raise an error are made through pg_call(), so C++ frames unwind.
 */
#include "worker/event_loop.h"
#include "common/guc.h"
#include "worker/retirement.h"
#include "worker/slot_calls.h"
#include "worker/worker_self.h"

#include "common/pg_headers.h"
#include "common/cxx_boundary.h"

extern "C" {
#include "postmaster/interrupt.h"
}

namespace bgw {

namespace {

void publish_gauges()
{
    PoolCounts n = self->pool.counts();
    WorkerState *w = self->state;
    pg_atomic_write_u32(&w->conns_open, n.open);
    pg_atomic_write_u32(&w->conns_idle, n.idle);
    pg_atomic_write_u32(&w->conns_active, n.active + n.cancelling);
    pg_atomic_write_u32(&w->conns_connecting, n.connecting);
    pg_atomic_write_u64(&w->connects, self->pool.connects());
    pg_atomic_write_u32(&w->run_state, self->calls.empty() ? WORKER_IDLE : WORKER_BUSY);
    self->stats.publish(self->pool);
}

/* Rebuild the wait set when the sockets or their interests changed. */
void prepare_wait_set()
{
    std::vector<std::tuple<int, int, uint64_t>> want;
    std::vector<Connection *> conns;
    self->pool.for_each_socket([&](int sock, int events, Connection *c, uint64_t id) {
        if (events) {
            want.emplace_back(sock, events, id);
            conns.push_back(c);
        }
    });
    if (self->wes && want == self->wes_sockets && !self->pool.any_connecting())
        return;
    pg_call([&] {
        if (self->wes)
            FreeWaitEventSet(self->wes);
        self->wes = CreateWaitEventSet(TopMemoryContext, int(want.size()) + 2);
        AddWaitEventToSet(self->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(self->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        for (size_t i = 0; i < want.size(); i++) {
            int events = std::get<1>(want[i]);
            uint32 ev = ((events & 1) ? WL_SOCKET_READABLE : 0) | ((events & 2) ? WL_SOCKET_WRITEABLE : 0);
            AddWaitEventToSet(self->wes, ev, std::get<0>(want[i]), nullptr, conns[i]);
        }
    });
    self->wes_sockets = std::move(want);
}

/* Signals and barriers that arrived since the last turn. */
void serve_interrupts()
{
    /* DROP DATABASE and others wait until every process with a
     * ProcSignal slot (we have one) absorbs their barrier */
    if (ProcSignalBarrierPending)
        pg_call([] { ProcessProcSignalBarrier(); });
    if (ConfigReloadPending) {
        ConfigReloadPending = false;
        pg_call([] { ProcessConfigFile(PGC_SIGHUP); });
        apply_limits();
    }
}

/* Until the pool's next deadline, at most a second. */
long wait_timeout_ms()
{
    long timeout = 1000;
    Clock::time_point deadline = self->pool.next_deadline();
    if (deadline != Clock::time_point::max()) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        timeout = std::max<long>(0, std::min<long>(timeout, long(ms) + 1));
    }
    return timeout;
}

void wait_for_events()
{
    constexpr int kMaxEvents = 64;
    WaitEvent events[kMaxEvents];
    prepare_wait_set();
    long timeout = wait_timeout_ms();
    int n = pg_call([&] { return WaitEventSetWait(self->wes, timeout, events, kMaxEvents, PG_WAIT_EXTENSION); });
    for (int i = 0; i < n; i++) {
        if (!(events[i].events & WL_SOCKET_MASK))
            continue;
        auto *c = static_cast<Connection *>(events[i].user_data);
        /* a socket event of a connection closed earlier in this batch
         * cannot arrive: the pool only deletes in reap(), and the set
         * is rebuilt before the next wait */
        self->pool.on_socket(c, events[i].events & WL_SOCKET_READABLE, events[i].events & WL_SOCKET_WRITEABLE);
    }
}

} // namespace

void apply_limits()
{
    PoolLimits l;
    l.max_per_key = guc_max_pool_connections;
    l.idle_timeout_s = guc_idle_timeout_s;
    self->pool.set_limits(l);
}

void run_loop()
{
    for (;;) {
        ResetLatch(MyLatch);
        if (ShutdownRequestPending)
            return;
        serve_interrupts();
        retire_for_dropped_database();
        Ticket t;
        while (worker_queue(self->index)->pop(t))
            pick_up(t);
        step_all_calls();
        self->pool.on_timer(Clock::now());
        step_all_calls();
        publish_gauges();
        wait_for_events();
    }
}

} // namespace bgw
