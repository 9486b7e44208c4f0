/*
 * pool_stats_worker.cpp — see pool_stats_worker.h; the entries' contract is
 * in pool_stats.h. Everything here runs in the worker that owns the region.
 */
#include <cstring>
#include <functional>
#include <memory>

#include "pool_stats_worker.h"
#include "shmem.h"
#include "pool_stats.h"

#include "pg_headers.h"
#include "cxx_boundary.h"

namespace bgw {

namespace {

std::string make_identity(Oid dbid, Oid roleid, const std::string &cluster, uint32 partition, uint64 connect_hash)
{
    return std::to_string(dbid) + '\x1f' + std::to_string(roleid) + '\x1f' + cluster + '\x1f' +
           std::to_string(partition) + '\x1f' + std::to_string(connect_hash);
}

/* A value as libpq reads it back: quoted when it would not survive bare. */
std::string conninfo_value(const char *v)
{
    bool plain = *v != '\0';
    for (const char *p = v; *p; p++)
        if (*p == ' ' || *p == '\'' || *p == '\\' || *p == '=' || *p == '\t' || *p == '\n')
            plain = false;
    if (plain)
        return v;
    std::string out = "'";
    for (const char *p = v; *p; p++) {
        if (*p == '\'' || *p == '\\')
            out += '\\';
        out += *p;
    }
    return out + "'";
}

/* The connection string as keyword=value pairs (URIs too), the password
 * replaced whatever its spelling, the user the pool connects as last. */
std::string masked_conninfo(const std::string &connstr, const std::string &user)
{
    char *err = nullptr;
    std::unique_ptr<PQconninfoOption, void (*)(PQconninfoOption *)> opts(PQconninfoParse(connstr.c_str(), &err),
                                                                         PQconninfoFree);
    if (err)
        PQfreemem(err);
    if (!opts)
        return "(invalid connection string)";
    std::string out;
    for (PQconninfoOption *o = opts.get(); o->keyword; o++) {
        if (!o->val || (!user.empty() && strcmp(o->keyword, "user") == 0))
            continue;
        if (!out.empty())
            out += ' ';
        out += o->keyword;
        out += '=';
        out += strcmp(o->keyword, "password") == 0 ? std::string("********") : conninfo_value(o->val);
    }
    if (!user.empty())
        out += (out.empty() ? "user=" : " user=") + conninfo_value(user.c_str());
    return out;
}

void add(pg_atomic_uint64 *c, uint64 n)
{
    if (n)
        pg_atomic_fetch_add_u64(c, n);
}

TimestampTz steady_to_timestamp(Clock::time_point t, Clock::time_point now_steady, TimestampTz now)
{
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(now_steady - t).count();
    return now - TimestampTz(us);
}

} // namespace

void StatBook::start(int worker)
{
    int per = proxy_shared->npool_stats / proxy_shared->nworkers;
    first_ = worker * per;
    local_.assign(size_t(per), Local());
    by_identity_.clear();
    Clock::time_point now = Clock::now();
    for (int i = 0; i < per; i++) {
        PoolStat *e = pool_stat(first_ + i);
        SpinLockAcquire(&e->mutex);
        bool used = e->used;
        Oid dbid = e->dbid, roleid = e->roleid;
        uint32 partition = e->partition;
        uint64 hash = e->connect_hash;
        char cluster[NAMEDATALEN];
        memcpy(cluster, e->cluster, NAMEDATALEN);
        SpinLockRelease(&e->mutex);
        if (!used)
            continue;
        local_[i].identity = make_identity(dbid, roleid, cluster, partition, hash);
        local_[i].last_used = now;
        by_identity_[local_[i].identity] = i;
    }
    zero_gauges();
}

int StatBook::claim(const std::string &identity, const Pool &pool)
{
    int victim = -1;
    for (size_t i = 0; i < local_.size(); i++) {
        const Local &l = local_[i];
        if (l.identity.empty()) {
            victim = int(i);
            break;
        }
        /* forget the least recently used pool that holds nothing */
        KeyCounts k;
        if (l.active_jobs == 0 && !pool.key_counts(l.pool_key, k) &&
            (victim < 0 || l.last_used < local_[size_t(victim)].last_used))
            victim = int(i);
    }
    if (victim < 0) {
        if (!full_logged_) {
            full_logged_ = true;
            pg_call([] {
                ereport(LOG, (errmsg("bgw_proxy: pg_stat_bgw_proxy is not tracking a new pool: this "
                                     "worker's share of bgw_proxy.max_tracked_pools is in use")));
            });
        }
        return -1;
    }
    Local &l = local_[size_t(victim)];
    if (!l.identity.empty())
        by_identity_.erase(l.identity);
    l = Local();
    l.identity = identity;
    by_identity_[identity] = victim;
    return victim;
}

void StatBook::set_conninfo(int i, const JobSpec &spec)
{
    Local &l = local_[size_t(i)];
    if (l.connstr == spec.connstr && l.user == spec.user)
        return;
    l.connstr = spec.connstr;
    l.user = spec.user;
    std::string masked = masked_conninfo(spec.connstr, spec.user);
    PoolStat *e = pool_stat(first_ + i);
    SpinLockAcquire(&e->mutex);
    strlcpy(e->conninfo, masked.c_str(), sizeof(e->conninfo));
    SpinLockRelease(&e->mutex);
}

int StatBook::job_starting(uint32_t dbid, uint32_t roleid, const std::string &cluster, uint32_t partition, const JobSpec &spec,
                           const Pool &pool)
{
    uint64 hash = cluster.empty() ? uint64(std::hash<std::string>()(spec.connstr)) | 1 : 0;
    std::string identity = make_identity(dbid, roleid, cluster, partition, hash);
    int i;
    auto it = by_identity_.find(identity);
    if (it != by_identity_.end()) {
        i = it->second;
    } else {
        i = claim(identity, pool);
        if (i < 0)
            return -1;
        PoolStat *e = pool_stat(first_ + i);
        TimestampTz now = GetCurrentTimestamp();
        SpinLockAcquire(&e->mutex);
        e->used = true;
        e->dbid = dbid;
        e->roleid = roleid;
        e->partition = partition;
        strlcpy(e->cluster, cluster.c_str(), sizeof(e->cluster));
        e->connect_hash = hash;
        e->conninfo[0] = '\0';
        e->last_error[0] = '\0';
        e->last_error_at = 0;
        SpinLockRelease(&e->mutex);
        pool_stat_reset_counters(e, now);
    }
    set_conninfo(i, spec);
    Local &l = local_[size_t(i)];
    l.pool_key = spec.key;
    l.active_jobs++;
    l.last_used = Clock::now();

    uint64 sent = spec.query.size();
    for (const std::string &p : spec.params)
        sent += p.size();
    add(&pool_stat(first_ + i)->bytes_sent, sent);
    return first_ + i;
}

void StatBook::job_ended(const JobTally &t, JobOutcome outcome, const char *error)
{
    int i = t.stat_id - first_;
    if (t.stat_id < 0 || i < 0 || size_t(i) >= local_.size())
        return;
    Local &l = local_[size_t(i)];
    if (l.active_jobs > 0)
        l.active_jobs--;
    l.last_used = Clock::now();
    PoolStat *e = pool_stat(t.stat_id);
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(l.last_used - t.started).count();
    add(&e->calls, 1);
    add(&e->rows, t.rows);
    add(&e->bytes_received, t.bytes_received);
    add(&e->time_us, uint64(std::max<int64_t>(0, us)));
    if (outcome == JobOutcome::Cancelled)
        add(&e->cancels, 1);
    if (outcome == JobOutcome::Failed) {
        add(&e->errors, 1);
        TimestampTz now = GetCurrentTimestamp();
        SpinLockAcquire(&e->mutex);
        strlcpy(e->last_error, error ? error : "", sizeof(e->last_error));
        e->last_error_at = now;
        SpinLockRelease(&e->mutex);
    }
}

void StatBook::connected(int stat_id)
{
    if (stat_id >= 0)
        add(&pool_stat(stat_id)->connects, 1);
}

void StatBook::disconnected(int stat_id)
{
    if (stat_id >= 0)
        add(&pool_stat(stat_id)->disconnects, 1);
}

void StatBook::publish(const Pool &pool)
{
    Clock::time_point now_steady = Clock::now();
    TimestampTz now = 0;
    for (size_t i = 0; i < local_.size(); i++) {
        Local &l = local_[i];
        if (l.identity.empty())
            continue;
        KeyCounts k;
        bool any = pool.key_counts(l.pool_key, k);
        if (!any && !l.gauges_nonzero)
            continue;
        PoolStat *e = pool_stat(first_ + int(i));
        pg_atomic_write_u32(&e->conns_open, k.open);
        pg_atomic_write_u32(&e->conns_idle, k.idle);
        pg_atomic_write_u32(&e->conns_active, k.active);
        pg_atomic_write_u32(&e->conns_connecting, k.connecting);
        pg_atomic_write_u32(&e->conns_cancelling, k.cancelling);
        pg_atomic_write_u32(&e->waiting, k.waiting);
        if (k.waiting > 0 && now == 0)
            now = GetCurrentTimestamp();
        pg_atomic_write_u64(&e->wait_since,
                            k.waiting > 0 ? uint64(steady_to_timestamp(k.oldest_wait, now_steady, now)) : 0);
        l.gauges_nonzero = any;
    }
}

void StatBook::zero_gauges()
{
    for (size_t i = 0; i < local_.size(); i++) {
        PoolStat *e = pool_stat(first_ + int(i));
        for (pg_atomic_uint32 *g : {&e->conns_open, &e->conns_idle, &e->conns_active, &e->conns_connecting,
                                    &e->conns_cancelling, &e->waiting})
            pg_atomic_write_u32(g, 0);
        pg_atomic_write_u64(&e->wait_since, 0);
        local_[i].gauges_nonzero = false;
    }
}

} // namespace bgw
