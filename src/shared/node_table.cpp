/*
 * node_table.cpp — see node_table.h.
 */
#include "shared/shmem.h"
#include "common/guc.h"
#include "shared/node_table.h"

#include "common/pg_headers.h"

namespace bgw {

Size node_table_size(void) { return mul_size(Size(guc_max_nodes), sizeof(NodeEntry)); }

int node_table_capacity(void) { return proxy_shared->nnodes; }

NodeEntry *node_entry(int i)
{
    return reinterpret_cast<NodeEntry *>(reinterpret_cast<char *>(proxy_shared) + proxy_shared->nodes_off) + i;
}

void node_table_init(void)
{
    for (int i = 0; i < proxy_shared->nnodes; i++) {
        NodeEntry *e = node_entry(i);
        memset(e, 0, sizeof(NodeEntry));
        pg_atomic_init_u32(&e->used, 0);
        pg_atomic_init_u32(&e->state, NODE_UNKNOWN);
        pg_atomic_init_u32(&e->role, NODE_ROLE_UNKNOWN);
        pg_atomic_init_u32(&e->weight, 1);
        pg_atomic_init_u64(&e->lag, 0);
        pg_atomic_init_u64(&e->next_check, 0);
        pg_atomic_init_u64(&e->fresh_until, 0);
        SpinLockInit(&e->mutex);
        for (pg_atomic_uint64 *c : {&e->calls, &e->errors, &e->retries})
            pg_atomic_init_u64(c, 0);
    }
}

namespace {

bool same_node(const NodeEntry *e, Oid dbid, const char *cluster, int partition, int node, const char *host,
               const char *port)
{
    return e->dbid == dbid && e->partition == partition && e->node == node &&
           strncmp(e->cluster, cluster, NAMEDATALEN) == 0 && strncmp(e->host, host, kNodeHostLen) == 0 &&
           strncmp(e->port, port, sizeof(e->port)) == 0;
}

/* under ProxyShared.lock, either mode: the entry, or -1 (*free_out: the
 * first unused entry, or -1) */
int find_node(Oid dbid, const char *cluster, int partition, int node, const char *host, const char *port,
              int *free_out)
{
    int free_entry = -1;
    for (int i = 0; i < proxy_shared->nnodes; i++) {
        NodeEntry *e = node_entry(i);
        if (pg_atomic_read_u32(&e->used) == 0) {
            if (free_entry < 0)
                free_entry = i;
            continue;
        }
        pg_read_barrier();
        if (same_node(e, dbid, cluster, partition, node, host, port))
            return i;
    }
    if (free_out)
        *free_out = free_entry;
    return -1;
}

} // namespace

int node_find_or_add(Oid dbid, const char *cluster, int partition, int node, const char *host, const char *port)
{
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    int found = find_node(dbid, cluster, partition, node, host, port, nullptr);
    LWLockRelease(proxy_shared->lock);
    if (found >= 0)
        return found;

    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    int free_entry = -1;
    found = find_node(dbid, cluster, partition, node, host, port, &free_entry);
    if (found < 0 && free_entry >= 0) {
        NodeEntry *e = node_entry(free_entry);
        e->dbid = dbid;
        e->partition = partition;
        e->node = node;
        strlcpy(e->cluster, cluster, NAMEDATALEN);
        strlcpy(e->host, host, kNodeHostLen);
        strlcpy(e->port, port, sizeof(e->port));
        pg_atomic_write_u32(&e->state, NODE_UNKNOWN);
        pg_atomic_write_u32(&e->role, NODE_ROLE_UNKNOWN);
        pg_atomic_write_u64(&e->next_check, 0);
        pg_atomic_write_u64(&e->fresh_until, 0);
        pg_write_barrier();
        pg_atomic_write_u32(&e->used, 1);
        found = free_entry;
    }
    LWLockRelease(proxy_shared->lock);
    return found;
}

namespace {

void set_text(char *dst, const char *text)
{
    strlcpy(dst, text ? text : "", kNodeText);
}

} // namespace

uint64 node_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64(ts.tv_sec) * 1000000 + uint64(ts.tv_nsec) / 1000;
}

void node_record_check(NodeEntry *e, bool ok, NodeRole role, uint64 lag, uint64 max_lag, int retries, bool at_once,
                       const char *text, uint64 fresh_for_us)
{
    TimestampTz now = GetCurrentTimestamp();
    SpinLockAcquire(&e->mutex);
    e->last_check = now;
    e->last_check_ok = ok;
    set_text(e->last_check_result, text);
    if (!ok) {
        e->oks_in_row = 0;
        e->fails_in_row++;
        e->last_failure = now;
        set_text(e->last_failure_text, text);
        if (at_once || e->fails_in_row >= retries || pg_atomic_read_u32(&e->state) == NODE_UNKNOWN)
            pg_atomic_write_u32(&e->state, NODE_DOWN);
    } else {
        e->fails_in_row = 0;
        e->oks_in_row++;
        pg_atomic_write_u32(&e->role, role);
        pg_atomic_write_u64(&e->lag, lag);
        uint32 was = pg_atomic_read_u32(&e->state);
        if (was != NODE_DOWN || e->oks_in_row >= kChecksToRecover) {
            bool lagging = role == NODE_ROLE_STANDBY && max_lag > 0 && lag > max_lag;
            pg_atomic_write_u32(&e->state, lagging ? NODE_LAGGING : NODE_UP);
        }
    }
    SpinLockRelease(&e->mutex);
    pg_atomic_write_u64(&e->fresh_until, node_clock_us() + fresh_for_us);
}

/* A call's failure says little of the node (a wrong password, a remote
 * that ended its own session): the node's state is left to a check, made
 * now, on a new connection. */
void node_record_failure(NodeEntry *e, const char *text)
{
    TimestampTz now = GetCurrentTimestamp();
    SpinLockAcquire(&e->mutex);
    e->last_failure = now;
    set_text(e->last_failure_text, text);
    SpinLockRelease(&e->mutex);
    pg_atomic_write_u64(&e->next_check, 0);
}

uint32 node_effective_state(NodeEntry *e, uint64 now_us)
{
    if (now_us >= pg_atomic_read_u64(&e->fresh_until))
        return NODE_UNKNOWN;
    return pg_atomic_read_u32(&e->state);
}

bool node_partition_down(Oid dbid, const char *cluster, int partition, bool need_primary)
{
    uint64 now = node_clock_us();
    bool any = false;
    for (int i = 0; i < proxy_shared->nnodes; i++) {
        NodeEntry *e = node_entry(i);
        if (pg_atomic_read_u32(&e->used) == 0)
            continue;
        pg_read_barrier();
        if (e->dbid != dbid || e->partition != partition || strncmp(e->cluster, cluster, NAMEDATALEN) != 0)
            continue;
        uint32 st = node_effective_state(e, now);
        if (st == NODE_UNKNOWN)
            continue; /* not checked in time: of an older configuration, or not known yet */
        any = true;
        if (st == NODE_DOWN)
            continue;
        if (!need_primary || (st == NODE_UP && pg_atomic_read_u32(&e->role) == NODE_ROLE_PRIMARY))
            return false;
    }
    return any;
}

void node_table_reset_counters(void)
{
    for (int i = 0; i < proxy_shared->nnodes; i++) {
        NodeEntry *e = node_entry(i);
        for (pg_atomic_uint64 *c : {&e->calls, &e->errors, &e->retries})
            pg_atomic_write_u64(c, 0);
    }
}

const char *node_state_name(uint32 state)
{
    switch (state) {
    case NODE_UP:
        return "up";
    case NODE_DOWN:
        return "down";
    case NODE_LAGGING:
        return "lagging";
    default:
        return "unknown";
    }
}

const char *node_role_name(uint32 role)
{
    switch (role) {
    case NODE_ROLE_PRIMARY:
        return "primary";
    case NODE_ROLE_STANDBY:
        return "standby";
    default:
        return "unknown";
    }
}

} // namespace bgw
