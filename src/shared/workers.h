/*
 * workers.h — addressing a bgw_proxy worker from any process: which worker
 * serves a key, and how to wake it. The worker's own code is in worker/.
 */
#pragma once

#include <cstddef>

namespace bgw {

/* Which worker serves a pool key: the same key always goes to the same
 * worker, so its connections are reused by every backend. */
int worker_for_key(const char *key, size_t len);

/* Set worker w's latch if it is running (from any process). */
void wake_worker(int w);

} // namespace bgw
