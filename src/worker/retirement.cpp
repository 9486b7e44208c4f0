/*
 * retirement.cpp — see retirement.h. The DROP DATABASE ring and the pool
 * command ring are described in shmem.h.
 */
#include <algorithm>
#include <set>

#include "worker/retirement.h"
#include "worker/worker_self.h"

#include "common/pg_headers.h"
#include "common/cxx_boundary.h"

namespace bgw {

/* Connections made for an older configuration of a partition are retired
 * once idle: for a function-defined cluster, when a call comes with a
 * higher version (a lower one is a backend that has not seen the bump yet:
 * ignored, so two versions in use cannot make the pool flip); for a SQL/MED
 * cluster, when the connection string or user mapping password changed. */
void retire_on_config_change(const std::string &caller, const std::string &cluster, uint32_t partition,
                             const JobSpec &spec, int64_t version)
{
    self->lender.note_version(spec.key, version);
    auto &seen = self->last_config;
    auto it = seen.find(caller);
    if (it == seen.end()) {
        if (seen.size() >= 100000)
            seen.clear(); /* forgetting only delays a retirement to idle_timeout */
        seen.emplace(caller, ConfigSeen{spec.key, version, cluster, partition});
        return;
    }
    ConfigSeen &last = it->second;
    bool newer = version >= 0 ? version > last.version : last.key != spec.key;
    if (newer) {
        self->pool.retire_key(last.key);
        last.key = spec.key;
        last.version = version;
    }
}

/* DROP DATABASE (ours or another backend's) waits for the sessions on that
 * database to leave: retire our connections to a database of that name. */
void retire_for_dropped_database()
{
    if (pg_atomic_read_u64(&proxy_shared->drop_epoch) == self->drop_epoch)
        return;
    char names[kDropRing][NAMEDATALEN];
    int n = 0;
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    uint64 epoch = pg_atomic_read_u64(&proxy_shared->drop_epoch);
    uint64 from = std::max(self->drop_epoch + 1, epoch >= kDropRing ? epoch - kDropRing + 1 : 1);
    for (uint64 e = from; e <= epoch; e++)
        memcpy(names[n++], proxy_shared->drop_names[e % kDropRing], NAMEDATALEN);
    LWLockRelease(proxy_shared->lock);
    self->drop_epoch = epoch;
    for (int i = 0; i < n; i++) {
        names[i][NAMEDATALEN - 1] = '\0';
        self->pool.retire_database(names[i]);
    }
}

} // namespace bgw

namespace bgw {

/* The connections this worker made for a cluster (every partition when
 * partition < 0; every cluster when cluster is null), as its calls
 * recorded them. A key shared with another cluster is retired too: it is
 * reopened on demand. */
static void retire_cluster(const char *cluster, int32 partition)
{
    std::set<std::string> keys; /* callers of several roles or databases may share one */
    for (const auto &[caller, seen] : self->last_config)
        if (!cluster || (seen.cluster == cluster && (partition < 0 || seen.partition == uint32(partition))))
            keys.insert(seen.key);
    for (const std::string &key : keys)
        self->pool.retire_key(key);
}

void serve_pool_commands()
{
    uint64 epoch = pg_atomic_read_u64(&proxy_shared->command_epoch);
    if (epoch == self->command_epoch)
        return;
    PoolCommand commands[kCommandRing];
    int n = 0;
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    epoch = pg_atomic_read_u64(&proxy_shared->command_epoch);
    bool missed = epoch - self->command_epoch > uint64(kCommandRing);
    uint64 from = missed ? epoch - kCommandRing + 1 : self->command_epoch + 1;
    for (uint64 e = from; e <= epoch; e++)
        commands[n++] = proxy_shared->commands[e % kCommandRing];
    LWLockRelease(proxy_shared->lock);

    if (missed) {
        /* commands went by unseen: do more than any of them asked */
        retire_cluster(nullptr, -1);
        self->pool.close_idle();
    }
    for (int i = 0; i < n; i++) {
        PoolCommand &c = commands[i];
        c.cluster[NAMEDATALEN - 1] = '\0';
        if (c.kind == POOL_RECONNECT)
            retire_cluster(c.cluster, c.partition);
        else if (c.kind == POOL_DISCONNECT_IDLE)
            self->pool.close_idle();
    }
    self->command_epoch = epoch;
    pg_atomic_write_u64(&self->state->command_seen, epoch);
    pg_call([] { ConditionVariableBroadcast(&proxy_shared->command_cv); });
}

} // namespace bgw
