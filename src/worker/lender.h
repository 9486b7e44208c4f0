/*
 * lender.h — a worker's side of the lend table (shared/lend_table.h): it
 * parks its idle connections there for backends to borrow, and takes them
 * back when it needs them. The pool calls it (ConnectionLender); it
 * decides which connections can be lent: not encrypted (a TLS or GSS
 * session lives in this process and cannot be shared), of a key that fits
 * an entry and is not a node of a multi-host partition (those are routed
 * by the worker, node_router.h).
 *
 * Worker code; never throws, never raises a PostgreSQL error.
 */
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "pool/conn_pool.hpp"

namespace bgw {

class Lender final : public ConnectionLender {
public:
    /* Take over worker `worker`'s region: whatever an earlier incarnation
     * lent is forgotten (lend_table.h). Also at exit (stop). */
    void start(int worker);
    void stop();

    int lend(int slot, const std::string &key, PGconn *pg, uint64_t sock_ino, int64_t stat_ref) override;
    Back take_back(int slot, DrainFrom *from) override;
    void release(int slot) override;
    bool broken(int slot) override;
    Clock::time_point last_returned(int slot) override;

    /* The cluster version a key was last used with (retirement.cpp): a
     * backend borrows only a connection of the version it calls with, so
     * a newer version reaches the worker, which retires the older one's. */
    void note_version(const std::string &key, int64_t version) noexcept;

private:
    int first_ = 0;                          /* our region in the table */
    int worker_ = -1;
    std::vector<char> reserved_;             /* per entry of the region: a connection holds it */
    std::unordered_map<std::string, int64_t> versions_;
};

} // namespace bgw
