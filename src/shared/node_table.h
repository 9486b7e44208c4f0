/*
 * node_table.h — the health of every node, in shared memory.
 *
 * A partition whose connection string names several hosts (libpq's
 * multi-host form) has one node per host: a copy of the partition. Each
 * node a worker has routed a call to has an entry here, so that every
 * worker routes by the same picture, backends can skip a dead partition
 * (RUN ON ANY) and pg_stat_bgw_proxy_nodes can show it. Single-host
 * partitions have no entry: they behave exactly as in PL/Proxy.
 *
 * Contract:
 *  - Identity (dbid .. port): written once, by the worker that adds the
 *    entry, under ProxyShared.lock exclusive, before `used` is set to 1
 *    (an atomic write after a write barrier). Readers check `used` (read
 *    barrier after) and then read the identity without a lock. An entry is
 *    never freed or reused while the server runs (bgw_proxy_stat_reset()
 *    zeroes its counters only), so a cached index stays valid.
 *  - state, role, weight, lag, next_check, fresh_until: atomics, one value
 *    each. Written by workers (a check's result, a call's failure; weight
 *    from the call's configuration), read without a lock by routing
 *    (workers) and backends.
 *  - next_check: when a check is due (node_clock_us(); 0: now). A worker
 *    that wants to run a check claims it by moving next_check forward with
 *    a CAS: one check of a node at a time, whichever worker knows the
 *    node's login.
 *  - fresh_until: the state holds until then (node_clock_us()), a little
 *    more than two check intervals after the last check. A node no worker
 *    checks any more (its partition is no longer called, or no longer has
 *    this host) thus falls back to unknown (node_effective_state): its old
 *    state decides nothing.
 *  - The rest (check history, texts): under `mutex`, by whoever records a
 *    result (node_record_check / node_record_failure) and by the view.
 *  - calls, errors, retries: atomics, any worker adds.
 */
#pragma once

#include "common/pg_headers.h"

namespace bgw {

enum NodeState : uint32 {
    NODE_UNKNOWN = 0,            /* never checked yet */
    NODE_UP = 1,
    NODE_DOWN = 2,               /* refused, timed out, or failed checks in a row */
    NODE_LAGGING = 3,            /* a standby whose replay lag exceeds max_replica_lag */
};

enum NodeRole : uint32 {
    NODE_ROLE_UNKNOWN = 0,
    NODE_ROLE_PRIMARY = 1,
    NODE_ROLE_STANDBY = 2,
};

/* Successful checks in a row that bring a down node back up. */
constexpr int kChecksToRecover = 2;

constexpr int kNodeHostLen = 128;
constexpr int kNodeText = 160;

struct NodeEntry {
    pg_atomic_uint32 used;
    Oid dbid;
    int32 partition;
    int32 node;                      /* its place among the partition's hosts */
    char cluster[NAMEDATALEN];
    char host[kNodeHostLen];         /* host, or hostaddr when no host was given */
    char port[16];

    pg_atomic_uint32 state;          /* NodeState */
    pg_atomic_uint32 role;           /* NodeRole */
    pg_atomic_uint32 weight;         /* read weight, from the latest call's configuration */
    pg_atomic_uint64 lag;            /* bytes received and not yet replayed (standby) */
    pg_atomic_uint64 next_check;     /* node_clock_us(); see the contract above */
    pg_atomic_uint64 fresh_until;    /* node_clock_us(); see the contract above */

    slock_t mutex;
    int fails_in_row;
    int oks_in_row;
    TimestampTz last_check;          /* 0: never */
    bool last_check_ok;
    char last_check_result[kNodeText];
    TimestampTz last_failure;        /* 0: never */
    char last_failure_text[kNodeText];

    pg_atomic_uint64 calls;          /* calls routed to the node */
    pg_atomic_uint64 errors;         /* of them, failed */
    pg_atomic_uint64 retries;        /* calls that failed here and were retried on another node */
};

Size node_table_size(void);
void node_table_init(void);          /* shmem startup, once */
int node_table_capacity(void);
NodeEntry *node_entry(int i);

/* The entry of this node, added if new; -1 when the table is full.
 * Takes ProxyShared.lock (exclusive only to add). */
int node_find_or_add(Oid dbid, const char *cluster, int partition, int node, const char *host,
                     const char *port);

/* Microseconds of CLOCK_MONOTONIC: one clock for every process (on Linux
 * it is system-wide), which a change of the wall clock does not move. */
uint64 node_clock_us(void);

/* A check's outcome. ok: the check query answered (role, lag known).
 * retries: failures in a row that mark the node down; at_once: mark it
 * down now (refused or timed-out connection); a node never seen up is down
 * at its first failed check. max_lag: bytes, 0 off. The state holds for
 * fresh_for_us. */
void node_record_check(NodeEntry *e, bool ok, NodeRole role, uint64 lag, uint64 max_lag, int retries,
                       bool at_once, const char *text, uint64 fresh_for_us);

/* A call failed on the node's connection (or could not connect): recorded
 * as its last failure, and a check is due now (the check decides). */
void node_record_failure(NodeEntry *e, const char *text);

/* The node's state, unknown when no check has refreshed it in time. */
uint32 node_effective_state(NodeEntry *e, uint64 now_us);

/* Backends (RUN ON ANY): true when the partition has nodes whose state is
 * current and none of them can take the call: none up, or for a write
 * (need_primary) none up and primary. */
bool node_partition_down(Oid dbid, const char *cluster, int partition, bool need_primary);

/* bgw_proxy_stat_reset(): counters to zero. */
void node_table_reset_counters(void);

const char *node_state_name(uint32 state);
const char *node_role_name(uint32 role);

} // namespace bgw
