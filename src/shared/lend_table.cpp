/*
 * lend_table.cpp — see lend_table.h.
 */
#include "shared/shmem.h"
#include "common/guc.h"
#include "shared/lend_table.h"

#include "common/pg_headers.h"

namespace bgw {

Size lend_table_size(void)
{
    Size size = mul_size(mul_size(Size(guc_workers), kLendPerWorker), sizeof(LendEntry));
    size = add_size(size, mul_size(kVerdicts, sizeof(pg_atomic_uint64)));
    size = add_size(size, mul_size(Size(guc_debug_wait_channels), sizeof(pg_atomic_uint64)));
    size = add_size(size, mul_size(Size(guc_debug_wait_channels), sizeof(ConditionVariable)));
    return add_size(size, mul_size(Size(guc_workers), sizeof(pg_atomic_uint32)));
}

namespace {

pg_atomic_uint64 *verdicts(void)
{
    return reinterpret_cast<pg_atomic_uint64 *>(lend_entry(lend_table_capacity()));
}

/* after the verdicts: which pool waits on each channel (lend_table.h) */
pg_atomic_uint64 *channel_pools(void) { return verdicts() + kVerdicts; }

/* the values of a channel_pools entry besides a pool's key hash */
constexpr uint64 kNoPool = 0, kSeveralPools = ~uint64(0);

uint64 pool_mark(uint64 key_hash) { return key_hash == kNoPool || key_hash == kSeveralPools ? 1 : key_hash; }

/* after the channels' pools */
ConditionVariable *channels(void)
{
    return reinterpret_cast<ConditionVariable *>(channel_pools() + proxy_shared->nwait_channels);
}

/* after the channels, one per worker */
pg_atomic_uint32 *high_water(void)
{
    return reinterpret_cast<pg_atomic_uint32 *>(channels() + proxy_shared->nwait_channels);
}

int channel_of(uint64 key_hash) { return int(key_hash % uint64(proxy_shared->nwait_channels)); }

} // namespace

int lend_verdict(uint64 statement_hash)
{
    uint64 v = pg_atomic_read_u64(&verdicts()[statement_hash % kVerdicts]);
    if (v == 0 || (v & ~uint64(1)) != (statement_hash & ~uint64(1)))
        return -1;
    return int(v & 1);
}

void lend_verdict_set(uint64 statement_hash, bool binary)
{
    uint64 v = (statement_hash & ~uint64(1)) | (binary ? 1 : 0);
    if (v == 0)
        v = 2; /* 0 is "empty"; this hash is then never known */
    pg_atomic_write_u64(&verdicts()[statement_hash % kVerdicts], v);
}

ConditionVariable *lend_channel(uint64 key_hash) { return &channels()[channel_of(key_hash)]; }

void lend_channel_note_waiter(uint64 key_hash)
{
    pg_atomic_uint64 *pools = &channel_pools()[channel_of(key_hash)];
    uint64 mark = pool_mark(key_hash);
    uint64 seen = pg_atomic_read_u64(pools);
    if (seen == mark || seen == kSeveralPools)
        return;
    if (seen == kNoPool && pg_atomic_compare_exchange_u64(pools, &seen, mark))
        return;
    if (seen != mark) /* another pool's, now or since the CAS above failed */
        pg_atomic_write_u64(pools, kSeveralPools);
}

void lend_channel_signal(uint64 key_hash)
{
    ConditionVariable *cv = lend_channel(key_hash);
    ConditionVariableSignal(cv);
    /* after the signal's spinlock: a waiter of another pool that was on
     * the list then had marked the channel before it joined */
    if (pg_atomic_read_u64(&channel_pools()[channel_of(key_hash)]) == kSeveralPools)
        ConditionVariableBroadcast(cv);
}

int lend_region_used(int worker)
{
    return Min(int(pg_atomic_read_u32(&high_water()[worker])), kLendPerWorker);
}

void lend_region_note_use(int worker, int slot)
{
    Assert(slot >= worker * kLendPerWorker && slot < (worker + 1) * kLendPerWorker);
    uint32 used = uint32(slot - worker * kLendPerWorker + 1);
    if (pg_atomic_read_u32(&high_water()[worker]) < used)
        pg_atomic_write_u32(&high_water()[worker], used);
}

int lend_table_capacity(void) { return proxy_shared->nworkers * kLendPerWorker; }

LendEntry *lend_entry(int i)
{
    return reinterpret_cast<LendEntry *>(reinterpret_cast<char *>(proxy_shared) + proxy_shared->lends_off) + i;
}

void lend_table_init(void)
{
    for (int i = 0; i < kVerdicts; i++)
        pg_atomic_init_u64(&verdicts()[i], 0);
    for (int i = 0; i < proxy_shared->nwait_channels; i++) {
        pg_atomic_init_u64(&channel_pools()[i], kNoPool);
        ConditionVariableInit(&channels()[i]);
    }
    for (int w = 0; w < proxy_shared->nworkers; w++)
        pg_atomic_init_u32(&high_water()[w], 0);
    for (int i = 0; i < lend_table_capacity(); i++) {
        LendEntry *e = lend_entry(i);
        memset(e, 0, sizeof(LendEntry));
        pg_atomic_init_u64(&e->word, lend_word(0, LEND_FREE));
        pg_atomic_init_u32(&e->want, 0);
        pg_atomic_init_u64(&e->returned_us, 0);
        pg_atomic_init_u64(&e->calls, 0);
        pg_atomic_init_u32(&e->live, 0);
    }
}

uint64 lend_key_hash(const char *key, size_t len)
{
    return hash_bytes_extended(reinterpret_cast<const unsigned char *>(key), int(len), 0x6c656e64);
}

void lend_region_reset(int worker)
{
    for (int i = worker * kLendPerWorker; i < (worker + 1) * kLendPerWorker; i++) {
        LendEntry *e = lend_entry(i);
        pg_atomic_write_u32(&e->live, 0);
        uint64 w = pg_atomic_read_u64(&e->word);
        while (!pg_atomic_compare_exchange_u64(&e->word, &w, lend_word(lend_generation(w) + 1, LEND_FREE))) {
        }
    }
    pg_atomic_write_u32(&high_water()[worker], 0);
}

} // namespace bgw
