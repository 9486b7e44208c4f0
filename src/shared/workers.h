/*
 * workers.h — addressing a bgw_proxy worker from any process: which worker
 * serves a key, and how to wake it. The worker's own code is in worker/.
 */
#pragma once

#include <cstddef>
#include <cstdint>

struct PGPROC;

namespace bgw {

struct RequestSlot;

/* Which worker serves the next call of a pool key. Every worker serves
 * every key, each with a pool of its own. A key has a home worker (by
 * hash), which takes its calls while it has at most kHomeLoad calls; past
 * that, a call goes to the least loaded worker (the home one on a tie). So
 * light traffic reuses one worker's connections, and heavy traffic spreads
 * over all workers. */
constexpr uint32_t kHomeLoad = 1;
int pick_worker(const char *key, size_t len);

/* Count a call against worker w's load (before publishing it), and release
 * it when the call ends; see WorkerState.load and RequestSlot.charged. */
void charge_worker(RequestSlot *s, int w);
void uncharge_worker(RequestSlot *s);

/* Set worker w's latch if it is running (from any process). */
void wake_worker(int w);

/* Worker w's PGPROC if it is running, else NULL. */
PGPROC *worker_proc(int w);

} // namespace bgw
