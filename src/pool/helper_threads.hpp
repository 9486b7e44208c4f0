/*
 * helper_threads.hpp — a few threads per worker for the blocking calls
 * libpq leaves no non-blocking form of (PQcancel, getaddrinfo).
 *
 * Two lanes, so that one kind cannot starve the other (a cancel to a host
 * that dropped off the network can block for minutes; so can a lookup
 * with a dead DNS server). In each lane tasks run in arrival order on up
 * to kMaxHelperThreads threads, started on demand, detached, living as
 * long as the process; a lane holds at most kMaxPendingTasks waiting
 * tasks. A task must touch no
 * PostgreSQL state (no palloc, no ereport, no latch) and must not throw;
 * it reports back through atomics the worker polls. All signals are
 * blocked in the threads, so the worker's signal handling is unchanged.
 *
 * Pure C++.
 */
#pragma once

#include "common/pure_cxx.h"

#include <functional>

namespace bgw {

constexpr int kMaxHelperThreads = 4;
constexpr size_t kMaxPendingTasks = 256;

enum class HelperLane { Cancel, Resolve };

/* Queue a task; false if it could not be queued (lane full, no memory, no
 * thread). */
bool run_on_helper_thread(HelperLane lane, std::function<void()> task);

} // namespace bgw
