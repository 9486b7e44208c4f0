/*
 * node_router.h — which node of a multi-host partition a target runs on,
 * the health checks that keep the shared node table (shared/node_table.h)
 * true, and the one retry a failed target may get.
 *
 * A partition whose connection string names several hosts has one node per
 * host; each node is reached through its own pool key (the partition's key
 * + kKeyPartSeparator + the node's place), so connections of different
 * nodes are never mixed and retiring the partition's key retires them all
 * (Pool::retire_key). A single-host partition never comes here: it behaves
 * exactly as before.
 *
 *  - Writes go to the one node that is up and primary. Two such nodes: the
 *    write fails (55000) naming both. None, while some node was never
 *    checked: the target waits for the first checks (at most the health
 *    check timeout); none at all: 08001.
 *  - Reads go to an up node chosen at random by weight among those
 *    read_from allows (standby: standbys, or the primary when no standby is
 *    up; primary: the primary; any: all). Lagging and down nodes get none;
 *    a node of weight 0 gets no reads.
 *  - Checks: every node of a partition this worker was called for in the
 *    last kForgetUnused is checked each interval by some worker (the shared next_check is claimed by CAS), on
 *    a new connection, closed after (a server that accepts no new
 *    connection is down, even while its pooled ones still work). A check
 *    keeps the login it last succeeded with, else takes the latest call's;
 *    a login the worker never got through with does not count against a
 *    node that is up (it is that login's failure, not the node's). The query says pg_is_in_recovery() and the
 *    standby's replay lag; connecting and the query share the health
 *    check timeout.
 *  - Retry: once per target, on another node that is up, when the failure
 *    left the statement unsent (could not connect), or, for a read, when
 *    the connection failed before the first result came (lost connection,
 *    the remote session ended).
 *
 * Worker code: C++ objects; PostgreSQL only through pg_call() or
 * functions that cannot raise.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pool/conn_pool.hpp"
#include "shared/slot_protocol.hpp"

#include "common/pg_headers.h"

namespace bgw {

constexpr int kMaxNodesPerPartition = 64; /* NodeRoute::tried is a bit mask */

/* A partition's nodes as this worker knows them. */
struct NodeSet {
    struct Node {
        std::string connstr;         /* this host alone */
        std::string key_suffix;      /* kKeyPartSeparator + its place */
        std::string label;           /* host:port, for messages */
        int entry = -1;              /* NodeEntry index */
        uint32_t weight = 1;
    };
    std::vector<Node> nodes;
    /* from the latest call (cluster options) */
    uint64_t max_lag = 0;
    int interval_ms = 0, timeout_ms = 0, retries = 0;
};

/* A target's routing, kept by its Task while it runs. */
struct NodeRoute {
    NodeSet *set = nullptr;
    JobSpec base;                    /* the partition's job: each node's is made from it */
    bool read = false;
    proto::ReadFrom read_from = proto::ReadFrom::Any;
    int node = -1;                   /* running on; -1: not placed yet */
    uint64_t tried = 0;              /* bit per node tried */
    bool retried = false;
    std::string first_failure;       /* node: why, when retried (for the error if no node is left) */
    Clock::time_point wait_until = Clock::time_point::max(); /* waiting for first checks */
};

/* What the router says of a target it cannot place (sqlstate empty: wait). */
struct NoNode {
    const char *sqlstate = "";
    std::string message, detail;
};

class HealthCheck;

class NodeRouter {
public:
    NodeRouter();
    ~NodeRouter();

    /* The routing of a target of a cluster call, or null when its
     * partition has one host (or its nodes cannot be tracked: the string
     * then goes to libpq whole, as before). */
    std::unique_ptr<NodeRoute> route_for(Oid dbid, const std::string &cluster, uint32_t partition,
                                         const JobSpec &spec, const proto::Request &q,
                                         const proto::RequestTarget &tg);

    /* Place the target: true with *out the node's job; false with why
     * (sqlstate empty: it must wait, try again on a later turn). */
    bool place(NodeRoute &r, JobSpec *out, NoNode *why);

    /* The target's job failed (from its sink: must not throw). True if it
     * is to be placed again (on another node). The node's failure is
     * recorded either way. */
    bool failed(NodeRoute &r, bool described, const PGresult *res, const char *sqlstate,
                const std::string &message, const std::string &detail) noexcept;

    /* Start the checks that are due; the loop calls it every turn. */
    void on_timer(Clock::time_point now);
    Clock::time_point next_deadline() const { return next_scan_; }

    /* A check's result has come in: targets waiting may be placed now. */
    void check_done() { next_scan_ = Clock::now(); }

private:
    std::unordered_map<std::string, std::unique_ptr<NodeSet>> sets_;
    std::unordered_map<int, std::unique_ptr<HealthCheck>> checks_; /* by NodeEntry index */
    Clock::time_point next_scan_ = Clock::time_point::max();
    void log_untracked(const char *why); /* once per worker */
    bool untracked_logged_ = false;
};

} // namespace bgw
