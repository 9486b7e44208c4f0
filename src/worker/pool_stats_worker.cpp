/*
 * pool_stats_worker.cpp — see pool_stats_worker.h; the entries' contract is
 * in pool_stats.h. Everything here runs in the worker that owns the region.
 *
 * A stat_ref is (generation << 32 | index in the whole array): a
 * connection or a job still holding the ref of an entry that has since been
 * given to another pool is recognised by its generation and not counted.
 */
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>

#include "common/conninfo.hpp"
#include "worker/pool_stats_worker.h"
#include "shared/shmem.h"
#include "shared/lend_table.h"
#include "shared/pool_stats.h"

#include "common/pg_headers.h"
#include "common/cxx_boundary.h"

namespace bgw {

std::string partition_caller(uint32_t dbid, uint32_t roleid, const std::string &cluster, uint32_t partition,
                             const std::string &remote_user)
{
    return std::to_string(dbid) + '\x1f' + std::to_string(roleid) + '\x1f' + cluster + '\x1f' +
           std::to_string(partition) + '\x1f' + remote_user;
}

namespace {

/* An entry's identity: the caller, and for CONNECT which connection string. */
std::string make_identity(const std::string &caller, uint64 connect_hash)
{
    return caller + '\x1f' + std::to_string(connect_hash);
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

void write_gauges(PoolStat *e, const KeyCounts &k, Clock::time_point now_steady, TimestampTz &now)
{
    pg_atomic_write_u32(&e->conns_open, k.open);
    pg_atomic_write_u32(&e->conns_idle, k.idle);
    pg_atomic_write_u32(&e->conns_active, k.active);
    pg_atomic_write_u32(&e->conns_connecting, k.connecting);
    pg_atomic_write_u32(&e->conns_cancelling, k.cancelling);
    pg_atomic_write_u32(&e->waiting, k.waiting);
    if (k.waiting > 0 && now == 0)
        now = GetCurrentTimestamp();
    pg_atomic_write_u64(&e->wait_since, k.waiting > 0 ? uint64(steady_to_timestamp(k.oldest_wait, now_steady, now)) : 0);
}

} // namespace

void StatBook::start(int worker)
{
    int per = proxy_shared->npool_stats / proxy_shared->nworkers;
    first_ = worker * per;
    local_.assign(size_t(per), Local());
    by_identity_.clear();
    by_key_.clear();
    nonzero_.clear();
    Clock::time_point now = Clock::now();
    for (int i = 0; i < per; i++) {
        PoolStat *e = pool_stat(first_ + i);
        SpinLockAcquire(&e->mutex);
        bool used = e->used;
        Oid dbid = e->dbid, roleid = e->roleid;
        uint32 partition = e->partition;
        uint64 hash = e->connect_hash;
        char cluster[NAMEDATALEN], remote_user[NAMEDATALEN];
        memcpy(cluster, e->cluster, NAMEDATALEN);
        memcpy(remote_user, e->remote_user, NAMEDATALEN);
        SpinLockRelease(&e->mutex);
        pool_stat_zero_gauges(e);
        if (!used)
            continue;
        local_[i].identity = make_identity(partition_caller(dbid, roleid, cluster, partition, remote_user), hash);
        local_[i].last_used = now;
        by_identity_[local_[i].identity] = i;
    }
}

int StatBook::claim(const std::string &identity, const Pool &pool)
{
    Clock::time_point now = Clock::now();
    if (now < full_until_)
        return -1;
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
        full_until_ = now + std::chrono::seconds(1); /* a full search per call would cost too much */
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
    bind_key(victim, std::string());
    uint32_t generation = l.generation + 1;
    l = Local();
    l.identity = identity;
    l.generation = generation;
    by_identity_[identity] = victim;
    return victim;
}

/* Keep by_key_ in step with an entry's pool key. */
void StatBook::bind_key(int i, const std::string &key)
{
    Local &l = local_[size_t(i)];
    if (l.pool_key == key)
        return;
    if (!l.pool_key.empty()) {
        auto it = by_key_.find(l.pool_key);
        if (it != by_key_.end()) {
            auto &v = it->second;
            v.erase(std::remove(v.begin(), v.end(), i), v.end());
            if (v.empty())
                by_key_.erase(it);
        }
    }
    l.pool_key = key;
    pg_atomic_write_u64(&pool_stat(first_ + i)->key_hash, key.empty() ? 0 : lend_key_hash(key.data(), key.size()));
    if (!key.empty())
        by_key_[key].push_back(i);
}

void StatBook::set_conninfo(int i, const JobSpec &spec)
{
    Local &l = local_[size_t(i)];
    if (l.connstr == spec.connstr)
        return;
    l.connstr = spec.connstr;
    PoolStat *e = pool_stat(first_ + i);
    char masked[kStatConninfoLen];
    pool_stat_clip(masked, sizeof(masked), conninfo_masked(spec.connstr, spec.user).c_str(), e->encoding);
    SpinLockAcquire(&e->mutex);
    memcpy(e->conninfo, masked, sizeof(masked));
    SpinLockRelease(&e->mutex);
}

int64_t StatBook::job_starting(const std::string &caller, uint32_t dbid, uint32_t roleid, const std::string &cluster,
                               uint32_t partition, const JobSpec &spec, const Pool &pool)
{
    uint64 hash = cluster.empty() ? uint64(std::hash<std::string>()(spec.connstr)) | 1 : 0;
    std::string identity = make_identity(caller, hash);
    int i;
    auto it = by_identity_.find(identity);
    if (it != by_identity_.end()) {
        i = it->second;
    } else {
        i = claim(identity, pool);
        if (i < 0)
            return -1;
        /* the entry changes hands: readers see an odd changecount until the
         * key, the text and every number belong to the new pool */
        PoolStat *e = pool_stat(first_ + i);
        TimestampTz now = GetCurrentTimestamp();
        pg_atomic_fetch_add_u32(&e->changecount, 1);
        SpinLockAcquire(&e->mutex);
        e->used = true;
        e->dbid = dbid;
        e->roleid = roleid;
        e->partition = partition;
        e->encoding = pg_char_to_encoding(spec.encoding.c_str());
        if (e->encoding < 0)
            e->encoding = PG_SQL_ASCII;
        strlcpy(e->cluster, cluster.c_str(), sizeof(e->cluster));
        strlcpy(e->remote_user, spec.user.c_str(), sizeof(e->remote_user));
        e->connect_hash = hash;
        e->conninfo[0] = '\0';
        e->last_error[0] = '\0';
        e->last_error_at = 0;
        SpinLockRelease(&e->mutex);
        pool_stat_reset_counters(e, now);
        pool_stat_zero_gauges(e);
        pg_atomic_fetch_add_u32(&e->changecount, 1);
    }
    set_conninfo(i, spec);
    bind_key(i, spec.key);
    Local &l = local_[size_t(i)];
    l.active_jobs++;
    l.last_used = Clock::now();

    uint64 sent = spec.query.size();
    for (const std::string &p : spec.params)
        sent += p.size();
    add(&pool_stat(first_ + i)->bytes_sent, sent);
    return (int64_t(l.generation) << 32) | int64_t(first_ + i);
}

StatBook::Local *StatBook::resolve(int64_t stat_ref, int *index)
{
    if (stat_ref < 0)
        return nullptr;
    int i = int(stat_ref & 0xffffffff) - first_;
    if (i < 0 || size_t(i) >= local_.size() || local_[size_t(i)].generation != uint32_t(stat_ref >> 32))
        return nullptr;
    *index = i;
    return &local_[size_t(i)];
}

void StatBook::job_ended(JobTally &t, JobOutcome outcome, const char *error)
{
    if (t.ended)
        return;
    t.ended = true;
    int i;
    Local *l = resolve(t.stat_ref, &i);
    if (!l)
        return;
    if (l->active_jobs > 0)
        l->active_jobs--;
    l->last_used = Clock::now();
    PoolStat *e = pool_stat(first_ + i);
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(l->last_used - t.started).count();
    add(&e->calls, 1);
    add(&e->rows, t.rows);
    if (t.binary)
        add(&e->binary_calls, 1);
    add(&e->bytes_received, t.bytes_received);
    add(&e->time_us, uint64(std::max<int64_t>(0, us)));
    if (outcome == JobOutcome::Cancelled)
        add(&e->cancels, 1);
    if (outcome == JobOutcome::Failed) {
        add(&e->errors, 1);
        pool_stat_note_error(e, error ? error : "", GetCurrentTimestamp());
    }
}

void StatBook::connected(int64_t stat_ref)
{
    int i;
    if (resolve(stat_ref, &i))
        add(&pool_stat(first_ + i)->connects, 1);
}

void StatBook::disconnected(int64_t stat_ref, const char *reason)
{
    int i;
    if (!resolve(stat_ref, &i))
        return;
    PoolStat *s = pool_stat(first_ + i);
    add(&s->disconnects, 1);
    if (message_level_is_interesting(DEBUG1)) {
        /* a log line never ends the worker: an error writing it is dropped */
        try {
            pg_call([s, reason] {
                ereport(DEBUG1, (errmsg("bgw_proxy: closed a connection of pool \"%s\" partition %u: %s",
                                        s->cluster[0] ? s->cluster : "(connect)", s->partition,
                                        reason ? reason : "closed")));
            });
        } catch (...) {
        }
    }
}

void StatBook::publish(const Pool &pool)
{
    if (local_.empty())
        return;
    round_++;
    Clock::time_point now_steady = Clock::now();
    TimestampTz now = 0;
    std::vector<int> nonzero;
    auto publish_key = [&](const std::string &key, const KeyCounts &k) {
        auto it = by_key_.find(key);
        if (it == by_key_.end())
            return;
        for (int i : it->second) {
            write_gauges(pool_stat(first_ + i), k, now_steady, now);
            Local &l = local_[size_t(i)];
            l.published = round_;
            if (!l.gauges_nonzero) {
                l.gauges_nonzero = true;
                nonzero.push_back(i);
            }
        }
    };
    /* the nodes of a multi-host partition (keys made of the partition's,
     * conn_pool.hpp) count as the partition's pool */
    std::map<std::string, KeyCounts> partitions;
    pool.for_each_key([&](const std::string &key, const KeyCounts &k) {
        size_t sep = key.find(kKeyPartSeparator);
        if (sep == std::string::npos) {
            publish_key(key, k);
            return;
        }
        KeyCounts &sum = partitions[key.substr(0, sep)];
        sum.open += k.open;
        sum.idle += k.idle;
        sum.active += k.active;
        sum.connecting += k.connecting;
        sum.cancelling += k.cancelling;
        sum.waiting += k.waiting;
        sum.oldest_wait = std::min(sum.oldest_wait, k.oldest_wait);
    });
    for (const auto &[key, k] : partitions)
        publish_key(key, k);
    /* pools that are gone since the last round: their gauges go to zero */
    for (int i : nonzero_) {
        Local &l = local_[size_t(i)];
        if (l.published == round_)
            nonzero.push_back(i);
        else if (l.gauges_nonzero) {
            pool_stat_zero_gauges(pool_stat(first_ + i));
            l.gauges_nonzero = false;
        }
    }
    std::sort(nonzero.begin(), nonzero.end());
    nonzero.erase(std::unique(nonzero.begin(), nonzero.end()), nonzero.end());
    nonzero_.swap(nonzero);
}

void StatBook::zero_gauges()
{
    for (size_t i = 0; i < local_.size(); i++) {
        pool_stat_zero_gauges(pool_stat(first_ + int(i)));
        local_[i].gauges_nonzero = false;
    }
    nonzero_.clear();
}

} // namespace bgw
