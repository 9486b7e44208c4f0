/*
 * worker.h — the pool of background workers that own remote connections.
 */
#pragma once

namespace bgw {

/* Called from _PG_init: one static background worker per bgw_proxy.workers. */
void register_workers(void);

/* Which worker serves a pool key: the same key always goes to the same
 * worker, so its connections are reused by every backend. */
int worker_for_key(const char *key, size_t len);

/* Set worker w's latch if it is running (from any process). */
void wake_worker(int w);

} // namespace bgw
