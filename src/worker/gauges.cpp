/*
 * gauges.cpp — see gauges.h. WorkerState's gauges are single-writer
 * atomics (shmem.h); the entries' contract is in pool_stats.h.
 */
#include "worker/gauges.h"
#include "worker/worker_self.h"

#include "common/pg_headers.h"

namespace bgw {

namespace {

bool stale = true;
Clock::time_point last_published;

void publish()
{
    PoolCounts n = self->pool.counts();
    WorkerState *w = self->state;
    pg_atomic_write_u32(&w->conns_open, n.open);
    pg_atomic_write_u32(&w->conns_idle, n.idle);
    pg_atomic_write_u32(&w->conns_active, n.active + n.cancelling);
    pg_atomic_write_u32(&w->conns_connecting, n.connecting);
    pg_atomic_write_u64(&w->connects, self->pool.connects());
    /* in_flight: calls ended already are not counted, even before they
     * leave self->calls */
    pg_atomic_write_u32(&w->run_state, pg_atomic_read_u32(&w->in_flight) == 0 ? WORKER_IDLE : WORKER_BUSY);
    self->stats.publish(self->pool);
    stale = false;
    last_published = Clock::now();
}

} // namespace

void gauges_touched() { stale = true; }

void gauges_publish(bool now_if_last)
{
    if (!stale)
        return;
    if ((now_if_last && pg_atomic_read_u32(&self->state->in_flight) == 0) ||
        Clock::now() - last_published >= std::chrono::milliseconds(kPublishMs))
        publish();
}

long gauges_wait_ms(long timeout_ms)
{
    if (!stale)
        return timeout_ms;
    auto since = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_published).count();
    return std::max(0L, std::min(timeout_ms, kPublishMs - long(since)));
}

} // namespace bgw
