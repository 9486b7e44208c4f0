/*
 * pool_stats.h — the shared statistics behind pg_stat_bgw_proxy: one entry
 * per (database, cluster, partition, role) a worker has served.
 *
 * The entries live in the "bgw_proxy" segment, split into one region per
 * worker (bgw_proxy.max_tracked_pools / bgw_proxy.workers entries each).
 * Every worker serves every pool with connections of its own, so a pool
 * may have an entry in each worker's region; each worker writes only its
 * own region (it "owns" its entries below), and the view adds up the
 * entries of one pool.
 *
 * Who writes what (and no exclusive LWLock anywhere on the call path):
 *
 *   key fields, conninfo       the owning worker, under `mutex`, when it
 *   (dbid ... conninfo)        claims or re-uses the entry or the partition's
 *                              connection string changes; `used` is set and
 *                              cleared under `mutex` too.
 *   changecount                the owning worker, around a claim: odd while
 *                              the entry changes hands (key written, numbers
 *                              zeroed). A reader that sees it odd, or changed
 *                              across its copy, copies again; so a row never
 *                              mixes one pool's key with another's numbers.
 *   last_error, last_error_at  under `mutex`, when a call of the entry ends in
 *                              an error: the owning worker, or a backend
 *                              whose direct call it was (lend_table.h). Text fields are
 *                              in `encoding` (the calling database's), cut at
 *                              a character boundary.
 *   gauges (conns_*, waiting,  the owning worker, pg_atomic_write, once per
 *   wait_since)                event-loop iteration; zeroed when it starts.
 *   counters (calls ...        the owning worker adds with pg_atomic_fetch_add
 *   disconnects)               as jobs end and connections open and close,
 *                              and so does a backend as a direct call on a
 *                              connection of the entry ends (lend_table.h);
 *                              any backend may zero them with
 *                              bgw_proxy_stat_reset() (an add racing a reset
 *                              lands before or after it, counter by counter:
 *                              a call ending during a reset may be half
 *                              counted).
 *   stats_reset                whoever resets (worker at claim, backend on
 *                              reset), pg_atomic_write.
 *
 * Readers (the view) take `mutex` only to copy the key and text fields and
 * read every number without a lock. `mutex` is a spinlock: held for a few
 * copies, never across a system call or an allocation.
 */
#pragma once

#include "common/pg_headers.h"

namespace bgw {

constexpr int kStatConninfoLen = 512;
constexpr int kStatErrorLen = 256;

struct PoolStat {
    pg_atomic_uint32 changecount;
    slock_t mutex;
    bool used;
    Oid dbid;
    Oid roleid;
    uint32 partition;
    int encoding;                /* of the text fields: the calling database's */
    char cluster[NAMEDATALEN];   /* empty for a CONNECT function */
    char remote_user[NAMEDATALEN]; /* the user it connects as, when the call names one */
    uint64 connect_hash;         /* CONNECT: hash of its connection string; 0 for clusters */
    char conninfo[kStatConninfoLen]; /* the connection string, password masked */
    char last_error[kStatErrorLen];
    TimestampTz last_error_at;   /* 0: none */

    pg_atomic_uint32 conns_open;
    pg_atomic_uint32 conns_idle;
    pg_atomic_uint32 conns_active;
    pg_atomic_uint32 conns_connecting;
    pg_atomic_uint32 conns_cancelling;
    pg_atomic_uint32 waiting;      /* calls queued for a connection of a full pool */
    pg_atomic_uint64 wait_since;   /* TimestampTz the longest of them started waiting */
    pg_atomic_uint32 direct_waiting; /* backends waiting for a connection of this pool that
                                    * other backends borrowed (lend_table.h): each adds 1
                                    * and takes it off itself; the view adds it to `waiting` */
    pg_atomic_uint64 key_hash;     /* owning worker: lend_key_hash() of the pool key its
                                    * gauges come from (0: none); the view counts the
                                    * connections backends borrowed (lend_table.h) as
                                    * active, not idle */

    pg_atomic_uint64 calls;        /* jobs ended: done, failed or cancelled */
    pg_atomic_uint64 errors;
    pg_atomic_uint64 cancels;      /* abandoned by the caller (cancel, error, exit) */
    pg_atomic_uint64 rows;
    pg_atomic_uint64 binary_calls; /* calls whose results came in binary */
    pg_atomic_uint64 bytes_sent;   /* statement text and parameter values */
    pg_atomic_uint64 bytes_received; /* result values */
    pg_atomic_uint64 time_us;      /* sum over calls of submit-to-end time */
    pg_atomic_uint64 connects;
    pg_atomic_uint64 disconnects;
    pg_atomic_uint64 stats_reset;  /* TimestampTz */
};

/* Segment space for bgw_proxy.max_tracked_pools entries. */
Size pool_stats_size(void);
/* In the startup hook, once: every entry unused. */
void pool_stats_init(void);

/* Entry i of the whole array, and worker w's region [first, first + count). */
PoolStat *pool_stat(int i);
int pool_stats_per_worker(void);

/* Zero one entry's gauges (owning worker only). */
void pool_stat_zero_gauges(PoolStat *e);
/* Zero one entry's counters (not its gauges) and stamp stats_reset. */
void pool_stat_reset_counters(PoolStat *e, TimestampTz now);

/* Copy text into a field, cut at a character boundary of `encoding`. */
void pool_stat_clip(char *dst, size_t size, const char *src, int encoding);
/* last_error and last_error_at (the spinlock is taken here). */
void pool_stat_note_error(PoolStat *e, const char *text, TimestampTz at);

} // namespace bgw
