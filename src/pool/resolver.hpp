/*
 * resolver.hpp — host names resolved without blocking a worker.
 *
 * libpq resolves a connection's host names with a blocking getaddrinfo()
 * inside PQconnectStart/PQconnectPoll: a slow or unreachable DNS server
 * would stall every pool of the worker. So before a connection is started,
 * its host names are resolved on a helper thread (helper_threads.hpp), and
 * the connection is then opened with the addresses as `hostaddr` (the names
 * stay in `host`, for TLS verification and .pgpass). A host that resolves
 * to several addresses becomes several host entries, so libpq still tries
 * each in turn.
 *
 * Nothing to resolve (sockets, IP literals, hostaddr already given): no
 * resolution, the connection starts at once. A service file (service=,
 * PGSERVICE) is read by libpq inside PQconnectStart, which then resolves
 * its host names itself: such a connection is started on the lookup lane
 * as a whole (start_on_lookup_lane), and handed back to the worker.
 *
 * Pure C++ + libpq.
 */
#pragma once

#include "common/pure_cxx.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <libpq-fe.h>

namespace bgw {

struct Resolution {
    std::atomic<bool> done{false};   /* the fields below are final once true (acquire) */
    bool ok = false;
    std::string host, hostaddr, port; /* libpq keywords that override the connection string's */
    std::string error;               /* !ok: why, libpq-style */
    std::string dns_errors;          /* ok, but some host names did not resolve */
    PGconn *started = nullptr;       /* start_on_lookup_lane: the connection, whoever takes it */
    ~Resolution()
    {
        if (started)
            PQfinish(started); /* nobody took it: the connection was closed meanwhile */
    }
};
using ResolutionPtr = std::shared_ptr<Resolution>;

/* Starts resolving the host names of `connstr` (or of PGHOST when it names
 * none) on the helper threads' lookup lane. Returns null when there is
 * nothing to resolve (addresses only, a hostaddr, a service file) or when
 * out of memory: then libpq connects as it would. When the lane is full,
 * the returned resolution has already failed ("too many host name lookups
 * pending"): a lookup is never done on the worker's own thread. */
ResolutionPtr resolve_hosts_async(const std::string &connstr);

/* Does the connection string (or PGSERVICE) name a service? */
bool names_service(const std::string &connstr);

/* Runs `start` (a PQconnectStartParams) on the lookup lane; the result, ok
 * or not, is Resolution::started. Null when out of memory; failed at once
 * when the lane is full. */
ResolutionPtr start_on_lookup_lane(std::function<PGconn *()> start);

} // namespace bgw
