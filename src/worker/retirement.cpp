/*
 * retirement.cpp — see retirement.h. The DROP DATABASE ring is described
 * in shmem.h.
 */
#include "worker/retirement.h"
#include "worker/worker_self.h"

#include "common/pg_headers.h"

#include <algorithm>

namespace bgw {

/* Connections made for an older configuration of a partition are retired
 * once idle: for a function-defined cluster, when a call comes with a
 * higher version (a lower one is a backend that has not seen the bump yet:
 * ignored, so two versions in use cannot make the pool flip); for a SQL/MED
 * cluster, when the connection string or user mapping password changed. */
void retire_on_config_change(const std::string &caller, const JobSpec &spec, int64_t version)
{
    auto &seen = self->last_config;
    auto it = seen.find(caller);
    if (it == seen.end()) {
        if (seen.size() >= 100000)
            seen.clear(); /* forgetting only delays a retirement to idle_timeout */
        seen.emplace(caller, std::make_pair(spec.key, version));
        return;
    }
    auto &[key, seen_version] = it->second;
    bool newer = version >= 0 ? version > seen_version : key != spec.key;
    if (newer) {
        self->pool.retire_key(key);
        key = spec.key;
        seen_version = version;
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
