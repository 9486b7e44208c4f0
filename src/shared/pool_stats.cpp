/*
 * pool_stats.cpp — the shared part of pg_stat_bgw_proxy's entries: sizing,
 * addressing, reset. The contract is in pool_stats.h; the worker's side
 * (claiming entries, counting) is in pool_stats_worker.cpp, the view and
 * the reset functions in stat_views.cpp.
 */
#include "shared/shmem.h"
#include "common/guc.h"
#include "shared/pool_stats.h"

#include "common/pg_headers.h"

namespace bgw {

/* Rounded up: a setting below the number of workers still tracks some. */
int pool_stats_per_worker(void)
{
    return guc_workers > 0 ? (guc_max_tracked_pools + guc_workers - 1) / guc_workers : 0;
}

Size pool_stats_size(void)
{
    return mul_size(Size(pool_stats_per_worker()) * Size(guc_workers), sizeof(PoolStat));
}

PoolStat *pool_stat(int i)
{
    return reinterpret_cast<PoolStat *>(reinterpret_cast<char *>(proxy_shared) + proxy_shared->pool_stats_off) + i;
}

void pool_stat_zero_gauges(PoolStat *e)
{
    for (pg_atomic_uint32 *g : {&e->conns_open, &e->conns_idle, &e->conns_active, &e->conns_connecting,
                                &e->conns_cancelling, &e->waiting})
        pg_atomic_write_u32(g, 0);
    pg_atomic_write_u64(&e->wait_since, 0);
}

void pool_stat_reset_counters(PoolStat *e, TimestampTz now)
{
    for (pg_atomic_uint64 *c : {&e->calls, &e->errors, &e->cancels, &e->rows, &e->binary_calls, &e->bytes_sent,
                                &e->bytes_received, &e->time_us, &e->connects, &e->disconnects})
        pg_atomic_write_u64(c, 0);
    pg_atomic_write_u64(&e->stats_reset, uint64(now));
}

void pool_stat_clip(char *dst, size_t size, const char *src, int encoding)
{
    size_t srclen = strlen(src);
    int len = int(std::min(srclen, size - 1));
    if (size_t(len) < srclen)
        len = pg_encoding_mbcliplen(encoding, src, int(std::min<size_t>(srclen, INT_MAX)), len);
    memcpy(dst, src, size_t(len));
    dst[len] = '\0';
}

void pool_stat_note_error(PoolStat *e, const char *text, TimestampTz at)
{
    char clipped[kStatErrorLen];
    pool_stat_clip(clipped, sizeof(clipped), text, e->encoding);
    SpinLockAcquire(&e->mutex);
    memcpy(e->last_error, clipped, sizeof(clipped));
    e->last_error_at = at;
    SpinLockRelease(&e->mutex);
}

void pool_stats_init(void)
{
    for (int i = 0; i < proxy_shared->npool_stats; i++) {
        PoolStat *e = pool_stat(i);
        memset(e, 0, sizeof(PoolStat));
        SpinLockInit(&e->mutex);
        pg_atomic_init_u32(&e->changecount, 0);
        for (pg_atomic_uint32 *g : {&e->conns_open, &e->conns_idle, &e->conns_active, &e->conns_connecting,
                                    &e->conns_cancelling, &e->waiting})
            pg_atomic_init_u32(g, 0);
        pg_atomic_init_u64(&e->wait_since, 0);
        pg_atomic_init_u64(&e->key_hash, 0);
        pg_atomic_init_u32(&e->direct_waiting, 0);
        for (pg_atomic_uint64 *c : {&e->calls, &e->errors, &e->cancels, &e->rows, &e->binary_calls, &e->bytes_sent,
                                    &e->bytes_received, &e->time_us, &e->connects, &e->disconnects,
                                    &e->stats_reset})
            pg_atomic_init_u64(c, 0);
    }
}

} // namespace bgw
