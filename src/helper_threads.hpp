/*
 * helper_threads.hpp — a few threads per worker for the blocking calls
 * libpq leaves no non-blocking form of (PQcancel, getaddrinfo).
 *
 * Tasks run in arrival order on up to kMaxHelperThreads threads, started
 * on demand, detached, living as long as the process. A task must touch no
 * PostgreSQL state (no palloc, no ereport, no latch) and must not throw;
 * it reports back through atomics the worker polls. All signals are
 * blocked in the threads, so the worker's signal handling is unchanged.
 *
 * Pure C++.
 */
#pragma once

#include "pure_cxx.h"

#include <functional>

namespace bgw {

constexpr int kMaxHelperThreads = 4;

/* Queue a task; false if it could not be queued (no memory, no thread). */
bool run_on_helper_thread(std::function<void()> task);

} // namespace bgw
