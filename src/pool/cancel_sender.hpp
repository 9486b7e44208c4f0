/*
 * cancel_sender.hpp — sends remote cancel requests without blocking a worker.
 *
 * libpq 15 only has the blocking PQcancel() (a new TCP connection to the
 * remote, a packet, a wait for close). A worker must never block, so cancels
 * run on its helper threads (helper_threads.hpp), which run nothing but
 * PQcancel/PQfreeCancel here — libpq documents both as thread-safe.
 *
 * Pure C++ + libpq.
 */
#pragma once

#include "common/pure_cxx.h"

#include <atomic>
#include <memory>

#include <libpq-fe.h>

namespace bgw {

/* Set by the thread once PQcancel has returned: the remote postmaster has
 * passed the request on, so it can no longer hit a later statement. */
using CancelDone = std::shared_ptr<std::atomic<bool>>;

/* Queue a cancel request for the statement running on `conn` now.
 * Returns null if libpq could not build the request (the caller then
 * closes the connection instead). */
CancelDone send_cancel_async(PGconn *conn);

} // namespace bgw
