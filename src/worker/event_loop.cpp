/*
 * event_loop.cpp — see event_loop.h.
 *
 * Nothing in the loop blocks: rings are used with nowait, libpq is
 * non-blocking, cancel requests are sockets of the loop too, DNS goes to
 * helper threads. PostgreSQL calls that could raise an error are made
 * through pg_call(), so C++ frames unwind.
 */
#include "worker/event_loop.h"
#include "common/guc.h"
#include "worker/gauges.h"
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

/* The wait set: latch, postmaster death, and the pooled sockets, either as
 * one epoll descriptor kept in step by the pool (SocketSet), or, where
 * there is no epoll, every socket, rebuilt when they change. */
WaitEventSet *wait_set = nullptr;
bool incremental = false;

void create_incremental_wait_set()
{
    pg_call([] {
        wait_set = CreateWaitEventSet(TopMemoryContext, 3);
        AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, self->sockets.fd(), nullptr, nullptr);
    });
}

/* The fallback: rebuild the wait set when the sockets or their interests
 * changed (or while libpq may swap a connecting socket). */
void rebuild_wait_set()
{
    std::vector<std::tuple<int, int, uint64_t>> want;
    std::vector<PoolSocket *> conns;
    self->pool.for_each_socket([&](int sock, int events, PoolSocket *c, uint64_t id) {
        if (events) {
            want.emplace_back(sock, events, id);
            conns.push_back(c);
        }
    });
    if (wait_set && want == self->wes_sockets && !self->pool.any_connecting())
        return;
    pg_call([&] {
        if (wait_set)
            FreeWaitEventSet(wait_set);
        wait_set = CreateWaitEventSet(TopMemoryContext, int(want.size()) + 2);
        AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        for (size_t i = 0; i < want.size(); i++) {
            int events = std::get<1>(want[i]);
            uint32 ev = ((events & 1) ? WL_SOCKET_READABLE : 0) | ((events & 2) ? WL_SOCKET_WRITEABLE : 0);
            AddWaitEventToSet(wait_set, ev, std::get<0>(want[i]), nullptr, conns[i]);
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
    Clock::time_point deadline = std::min(self->pool.next_deadline(), self->router.next_deadline());
    Clock::time_point now = Clock::now();
    if (deadline <= now)
        return 0;
    if (deadline != Clock::time_point::max()) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
        timeout = std::max<long>(0, std::min<long>(timeout, long(ms) + 1));
    }
    return timeout;
}

void wait_for_events()
{
    constexpr int kMaxEvents = 64;
    WaitEvent events[kMaxEvents];
    if (incremental && self->sockets.broken()) {
        self->pool.set_watcher(nullptr);
        self->sockets.reset();
        self->pool.set_watcher(&self->sockets);
    }
    if (!incremental)
        rebuild_wait_set();
    long timeout = gauges_wait_ms(wait_timeout_ms());
    int n = pg_call([&] { return WaitEventSetWait(wait_set, timeout, events, kMaxEvents, PG_WAIT_EXTENSION); });
    if (n == 0)
        gauges_touched(); /* a deadline: the next turn's on_timer may change things */
    for (int i = 0; i < n; i++) {
        if (!(events[i].events & WL_SOCKET_MASK))
            continue;
        gauges_touched();
        if (incremental) {
            /* the pool never destroys a connection in on_socket(), and a
             * forgotten one is skipped: every pointer here is live */
            self->sockets.drain([](PoolSocket *c, bool readable, bool writable) {
                self->pool.on_socket(c, readable, writable);
            });
        } else {
            auto *c = static_cast<PoolSocket *>(events[i].user_data);
            self->pool.on_socket(c, events[i].events & WL_SOCKET_READABLE, events[i].events & WL_SOCKET_WRITEABLE);
        }
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

void start_loop()
{
    incremental = self->sockets.open();
    if (incremental) {
        self->pool.set_watcher(&self->sockets);
        create_incremental_wait_set();
    }
    pg_call([] {
        ereport(LOG, (errmsg("bgw_proxy worker %d waits with %s", self->index,
                             incremental ? "an epoll set kept by the pool" : "a wait set rebuilt from the pool")));
    });
}

void run_loop()
{
    start_loop();
    for (;;) {
        ResetLatch(MyLatch);
        if (ShutdownRequestPending)
            return;
        serve_interrupts();
        retire_for_dropped_database();
        serve_pool_commands();
        if (pg_atomic_read_u32(&self->state->returns) != 0) {
            /* a backend gave back a connection we wait for */
            pg_atomic_write_u32(&self->state->returns, 0);
            pg_memory_barrier();
            self->pool.on_returns();
            gauges_touched();
        }
        Ticket t;
        while (worker_queue(self->index)->pop(t)) {
            pick_up(t);
            gauges_touched();
        }
        self->router.on_timer(Clock::now());
        step_all_calls();
        self->pool.on_timer(Clock::now());
        step_all_calls();
        gauges_publish(false);
        wait_for_events();
    }
}

} // namespace bgw
