/*
 * stat_views.cpp — SQL-callable functions behind the pg_stat_bgw_proxy*
 * views. Versioned names (..._1_0) so a later extension version can add
 * columns with a new function while old SQL keeps working.
 *
 * Reads: atomics without locks, the shared lock for the fields a worker
 * publishes together (pid, started_at), an entry's spinlock to copy its
 * text (pool_stats.h). The reset functions write only atomics, and text
 * under the entry's spinlock.
 */
#include "shared/shmem.h"
#include "shared/lend_table.h"
#include "shared/node_table.h"
#include "shared/pool_stats.h"
#include "shared/submit_queue.hpp"
#include "backend/cluster_gate.h"

#include "common/pg_headers.h"

extern "C" {
#include "catalog/pg_authid.h"
#include "utils/acl.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_workers_1_0);
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_queue_1_0);
}

using namespace bgw;

static const char *run_state_name(uint32 s)
{
    switch (s) {
    case WORKER_IDLE: return "idle";
    case WORKER_BUSY: return "busy";
    default: return "stopped";
    }
}

namespace {

/* Text a worker stored in the encoding of the calling database (cut at a
 * character boundary), shown in ours: converted when they differ; what
 * does not convert shows its non-ASCII bytes as '?'. */
Datum shared_text(const char *s, int encoding)
{
    int len = int(strlen(s));
    char *out = nullptr;
    if (encoding == GetDatabaseEncoding() || encoding == PG_SQL_ASCII) {
        if (pg_verifymbstr(s, len, true))
            return CStringGetTextDatum(s);
    } else {
        MemoryContext cxt = CurrentMemoryContext;
        PG_TRY();
        {
            out = (char *) pg_do_encoding_conversion((unsigned char *) s, len, encoding, GetDatabaseEncoding());
        }
        PG_CATCH();
        {
            MemoryContextSwitchTo(cxt);
            FlushErrorState();
            out = nullptr;
        }
        PG_END_TRY();
        if (out)
            return CStringGetTextDatum(out);
    }
    char *copy = pstrdup(s);
    for (char *p = copy; *p; p++)
        if (IS_HIGHBIT_SET(*p))
            *p = '?';
    return CStringGetTextDatum(copy);
}

/* The materialized result set, after checking that the SQL declaration of
 * the function (from the installed extension script) has the columns this
 * library builds: a mismatch would put values in the wrong slots. */
ReturnSetInfo *begin_rows(FunctionCallInfo fcinfo, int ncolumns)
{
    require_preloaded();
    InitMaterializedSRF(fcinfo, 0);
    auto *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
    if (rsinfo->setDesc->natts != ncolumns)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("bgw_proxy: the SQL definition of this function does not match the library"),
                        errdetail("It declares %d columns, the library returns %d.", rsinfo->setDesc->natts,
                                  ncolumns),
                        errhint("Run ALTER EXTENSION bgw_proxy UPDATE.")));
    return rsinfo;
}

uint64 since_reset(pg_atomic_uint64 *counter, pg_atomic_uint64 *base)
{
    uint64 b = pg_atomic_read_u64(base);
    uint64 v = pg_atomic_read_u64(counter);
    return v > b ? v - b : 0;
}

} // namespace

/* Connections backends have borrowed (lend_table.h) are busy, and those
 * given back broken are being cancelled (their worker has yet to take them
 * back), though the worker, not woken by a direct call, counts them idle:
 * of worker w, and of those with this pool key hash (0: any). */
struct LentCounts {
    uint32 lent = 0;
    uint32 broken = 0;
};

static LentCounts borrowed_connections(int w, uint64 key_hash)
{
    LentCounts n;
    for (int i = w * kLendPerWorker; i < (w + 1) * kLendPerWorker; i++) {
        LendEntry *e = lend_entry(i);
        uint32 state = lend_state(pg_atomic_read_u64(&e->word));
        if (state != LEND_LENT && state != LEND_BROKEN)
            continue;
        pg_read_barrier();
        if (key_hash == 0 || e->key_hash == key_hash)
            (state == LEND_LENT ? n.lent : n.broken)++;
    }
    return n;
}

/* Move them from idle to active and cancelling (the idle count may
 * already be behind: the gauges are published a little later than they
 * change). */
static void count_borrowed(uint32 &idle, uint32 &active, uint32 &cancelling, LentCounts n)
{
    uint32 moved = Min(idle, n.lent);
    idle -= moved;
    active += moved;
    moved = Min(idle, n.broken);
    idle -= moved;
    cancelling += moved;
}

Datum pg_stat_bgw_proxy_workers_1_0(PG_FUNCTION_ARGS)
{
    auto *rsinfo = begin_rows(fcinfo, 11);

    for (int i = 0; i < proxy_shared->nworkers; i++) {
        WorkerState *w = worker_state(i);
        Datum values[11];
        bool nulls[11] = {false};

        LWLockAcquire(proxy_shared->lock, LW_SHARED);
        uint32 pid = pg_atomic_read_u32(&w->pid);
        TimestampTz started = w->started_at;
        LWLockRelease(proxy_shared->lock);

        values[0] = Int32GetDatum(i);
        values[1] = Int32GetDatum((int32) pid);
        nulls[1] = (pid == 0);
        values[2] = CStringGetTextDatum(run_state_name(pg_atomic_read_u32(&w->run_state)));
        values[3] = TimestampTzGetDatum(started);
        nulls[3] = (pid == 0);
        uint32 idle = pg_atomic_read_u32(&w->conns_idle);
        uint32 active = pg_atomic_read_u32(&w->conns_active);
        uint32 cancelling = 0; /* not a column of this view: busy */
        count_borrowed(idle, active, cancelling, borrowed_connections(i, 0));
        active += cancelling;
        values[4] = Int32GetDatum((int32) pg_atomic_read_u32(&w->conns_open));
        values[5] = Int32GetDatum((int32) idle);
        values[6] = Int32GetDatum((int32) active);
        values[7] = Int32GetDatum((int32) pg_atomic_read_u32(&w->conns_connecting));
        values[8] = Int32GetDatum((int32) pg_atomic_read_u32(&w->in_flight));
        values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&w->served));
        values[10] = Int64GetDatum((int64) pg_atomic_read_u64(&w->connects));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum) 0;
}


namespace {

/* The queue view's versions: 1.1 adds depth, peak, in flight, slot waits
 * and the reset time after the columns of 1.0, which keep their meaning
 * (1.0's submitted and completed count since start, 1.1's since reset). */
enum class QueueApi { V1_0, V1_1 };

Datum queue_internal(FunctionCallInfo fcinfo, QueueApi api)
{
    constexpr int kCols10 = 5, kCols11 = 10;
    int ncols = api == QueueApi::V1_0 ? kCols10 : kCols11;
    auto *rsinfo = begin_rows(fcinfo, ncols);
    ProxyShared *sh = proxy_shared;
    Datum values[kCols11];
    bool nulls[kCols11] = {false};
    /* completed before submitted: in flight may look smaller, never negative */
    uint64 completed = pg_atomic_read_u64(&sh->completed);
    uint64 depth = queue_depth();
    uint64 submitted = pg_atomic_read_u64(&sh->submitted);
    values[0] = Int32GetDatum(sh->nworkers);
    values[1] = Int64GetDatum((int64) kSubmitQueueCapacity);
    values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&sh->queue_full_waits));
    if (api == QueueApi::V1_0) {
        values[2] = Int64GetDatum((int64) submitted);
        values[3] = Int64GetDatum((int64) completed);
    } else {
        values[2] = Int64GetDatum((int64) since_reset(&sh->submitted, &sh->submitted_base));
        values[3] = Int64GetDatum((int64) since_reset(&sh->completed, &sh->completed_base));
        values[5] = Int64GetDatum((int64) depth);
        values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&sh->peak_depth));
        values[7] = Int64GetDatum((int64) (submitted > completed ? submitted - completed : 0));
        values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&sh->slot_waits));
        values[9] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&sh->stats_reset));
    }
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    return (Datum) 0;
}

} // namespace

Datum pg_stat_bgw_proxy_queue_1_0(PG_FUNCTION_ARGS) { return queue_internal(fcinfo, QueueApi::V1_0); }

extern "C" {
PG_FUNCTION_INFO_V1(bgw_proxy_cluster_cache_1_0);
}

/* The shared cluster cache: which configurations every backend shares. */
Datum bgw_proxy_cluster_cache_1_0(PG_FUNCTION_ARGS)
{
    auto *rsinfo = begin_rows(fcinfo, 4);
    /* copy what the rows need under the lock; build them after */
    struct Row {
        bool used;
        Oid dbid;
        char name[NAMEDATALEN];
        int32 version;
        uint32 nparts;
    };
    int n = proxy_shared->nclusters;
    Row *rows = (Row *) palloc0(sizeof(Row) * (n + 1));
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    for (int i = 0; i < n; i++) {
        SharedCluster *s = shared_cluster(i);
        rows[i].used = s->used;
        if (!s->used)
            continue;
        rows[i].dbid = s->dbid;
        memcpy(rows[i].name, s->name, NAMEDATALEN);
        rows[i].version = s->version;
        memcpy(&rows[i].nparts, s->data, Min(sizeof(uint32), Size(s->len)));
    }
    LWLockRelease(proxy_shared->lock);
    for (int i = 0; i < n; i++) {
        if (!rows[i].used)
            continue;
        Datum values[4];
        bool nulls[4] = {false};
        values[0] = ObjectIdGetDatum(rows[i].dbid);
        values[1] = CStringGetTextDatum(rows[i].name);
        values[2] = Int32GetDatum(rows[i].version);
        values[3] = Int32GetDatum(int32(rows[i].nparts));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum) 0;
}

extern "C" {
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_queue_1_1);
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_1_1);
PG_FUNCTION_INFO_V1(bgw_proxy_stat_reset_1_1);
PG_FUNCTION_INFO_V1(bgw_proxy_stat_reset_cluster_1_1);
}

Datum pg_stat_bgw_proxy_queue_1_1(PG_FUNCTION_ARGS) { return queue_internal(fcinfo, QueueApi::V1_1); }

namespace {

constexpr int kPoolStatCols = 25;

/* One entry as copied out of shared memory. */
struct PoolStatCopy {
    bool used;
    Oid dbid, roleid;
    uint32 partition;
    int encoding;
    char cluster[NAMEDATALEN];
    char conninfo[kStatConninfoLen];
    char last_error[kStatErrorLen];
    TimestampTz last_error_at;
    uint32 gauges[6];            /* open, idle, active, connecting, cancelling, waiting */
    uint64 counters[10];         /* calls, errors, cancels, rows, binary_calls, bytes_sent,
                                  * bytes_received, time_us, connects, disconnects */
    TimestampTz wait_since, reset_at;
};

/* Copy entry e, again if it changed hands meanwhile (pool_stats.h). */
void copy_pool_stat(PoolStat *e, PoolStatCopy &c)
{
    for (;;) {
        uint32 before = pg_atomic_read_u32(&e->changecount);
        if (before & 1) {
            CHECK_FOR_INTERRUPTS();
            pg_spin_delay();
            continue;
        }
        pg_read_barrier();
        SpinLockAcquire(&e->mutex);
        c.used = e->used;
        c.dbid = e->dbid;
        c.roleid = e->roleid;
        c.partition = e->partition;
        c.encoding = e->encoding;
        memcpy(c.cluster, e->cluster, sizeof(c.cluster));
        memcpy(c.conninfo, e->conninfo, sizeof(c.conninfo));
        memcpy(c.last_error, e->last_error, sizeof(c.last_error));
        c.last_error_at = e->last_error_at;
        SpinLockRelease(&e->mutex);
        int k = 0;
        for (pg_atomic_uint32 *g : {&e->conns_open, &e->conns_idle, &e->conns_active, &e->conns_connecting,
                                    &e->conns_cancelling, &e->waiting})
            c.gauges[k++] = pg_atomic_read_u32(g);
        k = 0;
        for (pg_atomic_uint64 *n : {&e->calls, &e->errors, &e->cancels, &e->rows, &e->binary_calls, &e->bytes_sent,
                                    &e->bytes_received, &e->time_us, &e->connects, &e->disconnects})
            c.counters[k++] = pg_atomic_read_u64(n);
        c.wait_since = TimestampTz(pg_atomic_read_u64(&e->wait_since));
        c.reset_at = TimestampTz(pg_atomic_read_u64(&e->stats_reset));
        pg_read_barrier();
        if (pg_atomic_read_u32(&e->changecount) == before)
            break;
    }
    c.cluster[NAMEDATALEN - 1] = c.conninfo[kStatConninfoLen - 1] = c.last_error[kStatErrorLen - 1] = '\0';
}

/* The views' rows sort by database, cluster and partition first. */
int compare_place(Oid dbid_a, const char *cluster_a, int64 part_a, Oid dbid_b, const char *cluster_b, int64 part_b)
{
    if (dbid_a != dbid_b)
        return dbid_a < dbid_b ? -1 : 1;
    if (int c = strcmp(cluster_a, cluster_b))
        return c;
    return part_a < part_b ? -1 : part_a > part_b ? 1 : 0;
}

/* Entries of one pool: every worker serving it keeps its own. */
int compare_pool(const void *a, const void *b)
{
    auto *x = static_cast<const PoolStatCopy *>(a);
    auto *y = static_cast<const PoolStatCopy *>(b);
    if (int c = compare_place(x->dbid, x->cluster, x->partition, y->dbid, y->cluster, y->partition))
        return c;
    if (x->roleid != y->roleid)
        return x->roleid < y->roleid ? -1 : 1;
    return strcmp(x->conninfo, y->conninfo);
}

/* Add entry b (another worker's) into a: counts add up, the longest wait
 * and the latest error win. */
void merge_pool(PoolStatCopy &a, const PoolStatCopy &b)
{
    for (int i = 0; i < 6; i++)
        a.gauges[i] += b.gauges[i];
    for (int i = 0; i < 10; i++)
        a.counters[i] += b.counters[i];
    if (b.wait_since != 0 && (a.wait_since == 0 || b.wait_since < a.wait_since))
        a.wait_since = b.wait_since;
    if (b.last_error_at > a.last_error_at) {
        memcpy(a.last_error, b.last_error, sizeof(a.last_error));
        a.last_error_at = b.last_error_at;
    }
    a.reset_at = Max(a.reset_at, b.reset_at);
}

void pool_stat_row(const PoolStatCopy &c, TimestampTz now, Datum *values, bool *nulls)
{
    int k = 0;
    values[k++] = ObjectIdGetDatum(c.dbid);
    nulls[k] = nulls[k + 1] = c.cluster[0] == '\0';
    values[k++] = shared_text(c.cluster, c.encoding);
    values[k++] = Int32GetDatum(int32(c.partition));
    values[k++] = ObjectIdGetDatum(c.roleid);
    values[k++] = shared_text(c.conninfo, c.encoding);
    for (uint32 g : c.gauges)
        values[k++] = Int32GetDatum(int32(g));
    values[k++] = Float8GetDatum(c.wait_since != 0 && now > c.wait_since ? double(now - c.wait_since) / 1000.0 : 0.0);
    for (int n = 0; n < 7; n++) /* calls ... bytes_received */
        values[k++] = Int64GetDatum(int64(c.counters[n]));
    values[k++] = Float8GetDatum(double(c.counters[7]) / 1000.0);
    values[k++] = Int64GetDatum(int64(c.counters[8]));
    values[k++] = Int64GetDatum(int64(c.counters[9]));
    nulls[k] = nulls[k + 1] = c.last_error_at == 0;
    values[k++] = shared_text(c.last_error, c.encoding);
    values[k++] = TimestampTzGetDatum(c.last_error_at);
    values[k++] = TimestampTzGetDatum(c.reset_at);
    Assert(k == kPoolStatCols);
}

/* When the longest direct call waiting for a connection of each
 * statistics entry started (0: none waits), from the backends' request
 * slots (shmem.h). */
TimestampTz *direct_wait_starts(void)
{
    auto *since = (TimestampTz *) palloc0(sizeof(TimestampTz) * (proxy_shared->npool_stats + 1));
    for (int i = 0; i < proxy_shared->nslots; i++) {
        RequestSlot *s = request_slot(i);
        uint32 stat = pg_atomic_read_u32(&s->direct_wait_stat);
        if (stat == 0 || int(stat) > proxy_shared->npool_stats)
            continue;
        pg_read_barrier();
        TimestampTz t = TimestampTz(pg_atomic_read_u64(&s->direct_wait_since));
        if (since[stat - 1] == 0 || t < since[stat - 1])
            since[stat - 1] = t;
    }
    return since;
}

} // namespace

/* One row per tracked pool, the entries of every worker serving it added
 * up. Members of pg_read_all_stats (and superusers) see every row; other
 * roles see the rows of roles whose privileges they have. The connection
 * string never carries a password (pool_stats_worker masks it before it
 * reaches shared memory). */
Datum pg_stat_bgw_proxy_1_1(PG_FUNCTION_ARGS)
{
    auto *rsinfo = begin_rows(fcinfo, kPoolStatCols);
    Oid me = GetUserId();
    bool see_all = has_privs_of_role(me, ROLE_PG_READ_ALL_STATS);
    TimestampTz now = GetCurrentTimestamp();
    auto *copies = (PoolStatCopy *) palloc(sizeof(PoolStatCopy) * (proxy_shared->npool_stats + 1));
    TimestampTz *direct_since = direct_wait_starts();
    int n = 0;
    for (int i = 0; i < proxy_shared->npool_stats; i++) {
        PoolStatCopy &c = copies[n];
        copy_pool_stat(pool_stat(i), c);
        uint64 key_hash = pg_atomic_read_u64(&pool_stat(i)->key_hash);
        if (c.used && key_hash != 0)
            count_borrowed(c.gauges[1], c.gauges[2], c.gauges[4],
                           borrowed_connections(i / pool_stats_per_worker(), key_hash));
        c.gauges[5] += pg_atomic_read_u32(&pool_stat(i)->direct_waiting);
        if (direct_since[i] != 0 && (c.wait_since == 0 || direct_since[i] < c.wait_since))
            c.wait_since = direct_since[i];
        if (c.used && (see_all || has_privs_of_role(me, c.roleid)))
            n++;
    }
    qsort(copies, size_t(n), sizeof(PoolStatCopy), compare_pool);
    for (int i = 0; i < n;) {
        PoolStatCopy &c = copies[i];
        int j = i + 1;
        for (; j < n && compare_pool(&c, &copies[j]) == 0; j++)
            merge_pool(c, copies[j]);
        Datum values[kPoolStatCols];
        bool nulls[kPoolStatCols] = {false};
        pool_stat_row(c, now, values, nulls);
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
        i = j;
    }
    pfree(copies);
    return (Datum) 0;
}

namespace {

/* Zero the counters of one cluster's entries in database dbid, or of
 * every entry when cluster is NULL. */
void reset_entries(const char *cluster, Oid dbid)
{
    TimestampTz now = GetCurrentTimestamp();
    for (int i = 0; i < proxy_shared->npool_stats; i++) {
        PoolStat *e = pool_stat(i);
        SpinLockAcquire(&e->mutex);
        bool match = e->used && (!cluster || (e->dbid == dbid && strncmp(e->cluster, cluster, NAMEDATALEN) == 0));
        if (match) {
            e->last_error[0] = '\0';
            e->last_error_at = 0;
        }
        SpinLockRelease(&e->mutex);
        if (match)
            pool_stat_reset_counters(e, now);
    }
}

} // namespace

/* Everything: every pool's counters, every node's and the queue's. */
Datum bgw_proxy_stat_reset_1_1(PG_FUNCTION_ARGS)
{
    require_preloaded();
    ProxyShared *sh = proxy_shared;
    reset_entries(nullptr, InvalidOid);
    node_table_reset_counters();
    pg_atomic_write_u64(&sh->submitted_base, pg_atomic_read_u64(&sh->submitted));
    pg_atomic_write_u64(&sh->completed_base, pg_atomic_read_u64(&sh->completed));
    pg_atomic_write_u64(&sh->queue_full_waits, 0);
    pg_atomic_write_u64(&sh->slot_waits, 0);
    pg_atomic_write_u64(&sh->peak_depth, queue_depth());
    pg_atomic_write_u64(&sh->stats_reset, uint64(GetCurrentTimestamp()));
    PG_RETURN_VOID();
}

/* The pools and nodes of one cluster of the current database. */
Datum bgw_proxy_stat_reset_cluster_1_1(PG_FUNCTION_ARGS)
{
    require_preloaded();
    char *cluster = text_to_cstring(PG_GETARG_TEXT_PP(0));
    reset_entries(cluster, MyDatabaseId);
    for (int i = 0; i < node_table_capacity(); i++) {
        NodeEntry *e = node_entry(i);
        if (pg_atomic_read_u32(&e->used) == 0)
            continue;
        pg_read_barrier(); /* the identity was written before used (node_table.h) */
        if (e->dbid == MyDatabaseId && strncmp(e->cluster, cluster, NAMEDATALEN) == 0)
            for (pg_atomic_uint64 *c : {&e->calls, &e->errors, &e->retries})
                pg_atomic_write_u64(c, 0);
    }
    PG_RETURN_VOID();
}

extern "C" {
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_clusters_1_2);
}

/* pg_stat_bgw_proxy_clusters: one row per pause in force (operations.cpp),
 * copied under the shared lock; the calls still running are counted
 * afterwards, without it. */
Datum pg_stat_bgw_proxy_clusters_1_2(PG_FUNCTION_ARGS)
{
    constexpr int kCols = 7;
    auto *rsinfo = begin_rows(fcinfo, kCols);

    PauseEntry copies[kMaxPauses];
    uint32 waiting[kMaxPauses];
    int n = 0;
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    for (int i = 0; i < kMaxPauses; i++) {
        PauseEntry *p = &proxy_shared->pauses[i];
        if (!p->used)
            continue;
        memcpy(&copies[n], p, sizeof(PauseEntry));
        waiting[n++] = pg_atomic_read_u32(&p->waiting);
    }
    LWLockRelease(proxy_shared->lock);

    for (int k = 0; k < n; k++) {
        const PauseEntry &p = copies[k];
        Datum values[kCols];
        bool nulls[kCols] = {false};
        values[0] = CStringGetTextDatum(p.cluster);
        values[1] = Int32GetDatum(p.partition);
        nulls[1] = p.partition < 0;
        values[2] = CStringGetTextDatum(p.state == PAUSE_PAUSED ? "paused" : "pausing");
        values[3] = TimestampTzGetDatum(p.paused_at);
        values[4] = Int32GetDatum(p.paused_by);
        values[5] = Int32GetDatum(int32(waiting[k]));
        values[6] = Int32GetDatum(gate_calls_running(p.cluster_hash, p.partition));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum) 0;
}

extern "C" {
PG_FUNCTION_INFO_V1(pg_stat_bgw_proxy_nodes_1_3);
}

namespace {

/* One node as copied out of the node table (node_table.h). */
struct NodeCopy {
    Oid dbid;
    int32 partition, node;
    char cluster[NAMEDATALEN];
    char host[kNodeHostLen];
    char port[16];
    uint32 state, role, weight;
    uint64 lag, calls, errors, retries;
    TimestampTz last_check, last_failure; /* 0: never */
    bool last_check_ok;
    char last_check_result[kNodeText];
    char last_failure_text[kNodeText];
};

/* The identity is fixed once `used` is set: read without a lock; the
 * check history under the entry's spinlock; the rest are atomics. */
void copy_node(NodeEntry *e, NodeCopy &c)
{
    c.dbid = e->dbid;
    c.partition = e->partition;
    c.node = e->node;
    memcpy(c.cluster, e->cluster, sizeof(c.cluster));
    memcpy(c.host, e->host, sizeof(c.host));
    memcpy(c.port, e->port, sizeof(c.port));
    c.state = node_effective_state(e, node_clock_us()); /* unknown once no check keeps it current */
    c.role = pg_atomic_read_u32(&e->role);
    c.weight = pg_atomic_read_u32(&e->weight);
    c.lag = pg_atomic_read_u64(&e->lag);
    c.calls = pg_atomic_read_u64(&e->calls);
    c.errors = pg_atomic_read_u64(&e->errors);
    c.retries = pg_atomic_read_u64(&e->retries);
    SpinLockAcquire(&e->mutex);
    c.last_check = e->last_check;
    c.last_check_ok = e->last_check_ok;
    memcpy(c.last_check_result, e->last_check_result, sizeof(c.last_check_result));
    c.last_failure = e->last_failure;
    memcpy(c.last_failure_text, e->last_failure_text, sizeof(c.last_failure_text));
    SpinLockRelease(&e->mutex);
    c.cluster[NAMEDATALEN - 1] = c.host[kNodeHostLen - 1] = c.port[sizeof(c.port) - 1] = '\0';
    c.last_check_result[kNodeText - 1] = c.last_failure_text[kNodeText - 1] = '\0';
}

/* By database, cluster, partition, then the node's place among the hosts. */
int compare_node(const void *a, const void *b)
{
    auto *x = static_cast<const NodeCopy *>(a);
    auto *y = static_cast<const NodeCopy *>(b);
    if (int c = compare_place(x->dbid, x->cluster, x->partition, y->dbid, y->cluster, y->partition))
        return c;
    return x->node < y->node ? -1 : x->node > y->node ? 1 : 0;
}

/* host:port, [host]:port for an IPv6 address; the host alone without a port */
char *node_name(const NodeCopy &c)
{
    if (!c.port[0])
        return pstrdup(c.host);
    return psprintf(strchr(c.host, ':') ? "[%s]:%s" : "%s:%s", c.host, c.port);
}

} // namespace

/* pg_stat_bgw_proxy_nodes: one row per node in the table, of every
 * database, as pg_stat_bgw_proxy shows every database's pools. Where a node
 * is (host and port), and the texts of its last check and failure, which
 * libpq writes with the host in them, only for superusers and members of
 * pg_read_all_stats. The table keeps no encoding: text that is not valid
 * here shows its non-ASCII bytes as '?'. */
Datum pg_stat_bgw_proxy_nodes_1_3(PG_FUNCTION_ARGS)
{
    constexpr int kCols = 16;
    auto *rsinfo = begin_rows(fcinfo, kCols);
    bool see_where = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
    int encoding = GetDatabaseEncoding();
    int cap = node_table_capacity();
    auto *copies = (NodeCopy *) palloc(sizeof(NodeCopy) * (cap + 1));
    int n = 0;
    for (int i = 0; i < cap; i++) {
        NodeEntry *e = node_entry(i);
        if (pg_atomic_read_u32(&e->used) == 0)
            continue;
        pg_read_barrier(); /* the identity was written before used */
        copy_node(e, copies[n++]);
    }
    qsort(copies, size_t(n), sizeof(NodeCopy), compare_node);
    for (int i = 0; i < n; i++) {
        const NodeCopy &c = copies[i];
        Datum values[kCols];
        bool nulls[kCols] = {false};
        values[0] = ObjectIdGetDatum(c.dbid);
        values[1] = shared_text(c.cluster, encoding);
        values[2] = Int32GetDatum(c.partition);
        nulls[3] = !see_where;
        values[3] = see_where ? shared_text(node_name(c), encoding) : (Datum) 0;
        values[4] = CStringGetTextDatum(node_role_name(c.role));
        values[5] = CStringGetTextDatum(node_state_name(c.state));
        values[6] = Int32GetDatum(int32(Min(c.weight, uint32(PG_INT32_MAX))));
        values[7] = Int64GetDatum(int64(Min(c.lag, uint64(PG_INT64_MAX))));
        nulls[8] = nulls[9] = c.last_check == 0;
        values[8] = TimestampTzGetDatum(c.last_check);
        values[9] = BoolGetDatum(c.last_check_ok);
        nulls[10] = c.last_check == 0 || !see_where;
        values[10] = nulls[10] ? (Datum) 0 : shared_text(c.last_check_result, encoding);
        nulls[11] = c.last_failure == 0;
        values[11] = TimestampTzGetDatum(c.last_failure);
        nulls[12] = c.last_failure == 0 || !see_where;
        values[12] = nulls[12] ? (Datum) 0 : shared_text(c.last_failure_text, encoding);
        values[13] = Int64GetDatum(int64(c.calls));
        values[14] = Int64GetDatum(int64(c.errors));
        values[15] = Int64GetDatum(int64(c.retries));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    pfree(copies);
    return (Datum) 0;
}
