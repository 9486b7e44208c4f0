/*
 * lend_table.h — pooled connections a worker lends to backends, so that a
 * call runs without a worker hop (backend/direct_call.h).
 *
 * A worker parks each idle connection a backend could use (no TLS or GSS
 * encryption, one host; worker/lender.h) in an entry of its own region of
 * this table. A backend looks for a parked connection of each target's
 * pool key (common/pool_key.hpp), borrows it, copies the worker's socket
 * into its own process once (pidfd_getfd; kept for as long as the entry
 * holds the same connection: the backend closes a copy whose entry's
 * generation moved on, checking one per call), runs the statement itself
 * and gives the connection back, ready for the next query. Nothing wakes the
 * worker on the way: it takes a connection back only when it needs it (a
 * job of its own, an expiry, a retirement).
 *
 * Contract (every field names its writer):
 *
 *   word        generation << 3 | LendState, changed by compare-and-swap
 *               only (a full barrier):
 *     FREE   --owning worker, after writing the fields--------> PARKED
 *     PARKED --a backend (borrow)-----------------------------> LENT
 *     LENT   --that backend (give back, ready for query)------> PARKED
 *     LENT   --that backend (give back mid-statement)---------> BROKEN
 *               (with `drain` and where the stream stands, below)
 *     PARKED, BROKEN --owning worker (take back)-------------> FREE
 *               (same generation: the entry stays the connection's while it
 *               lives, so backends keep their copies of its socket)
 *     FREE   --owning worker (the connection closed)----------> FREE, generation + 1
 *     any    --a worker starting or exiting over its region---> FREE, generation + 1
 *               The generation names one connection's stay in the entry: a
 *               backend that gives back with a stale generation (its worker
 *               exited meanwhile) fails its CAS, ends the remote session
 *               itself and closes its copy.
 *   worker ... key  the owning worker, while the entry is FREE (no backend
 *               can be reading them); read by a backend after it won the
 *               PARKED -> LENT CAS (read before it only as a hint, then
 *               checked again).
 *   want        the owning worker sets 1 when it waits for a lent
 *               connection back (then a full barrier, then it reads `word`
 *               again); 0 when it parks the connection. The backend reads
 *               it after its give-back CAS: if 1, it sets the worker's
 *               WorkerState.returns and latch. So either the worker sees
 *               the connection back, or the backend sees it is wanted.
 *   returned_us the backend, before its give-back CAS: when it gave the
 *               connection back (node_clock_us(), node_table.h); read
 *               by the worker to tell a connection in use from an idle one.
 *   calls       the backends, one add per direct call (for diagnostics;
 *               no view shows it yet).
 *   live        the owning worker: 1 from a connection's first parking in
 *               the entry (after `key_hash`) to its close or the region's
 *               reset, when it writes 0. A backend counts the live entries
 *               of its pool's key hash: the connections the workers have
 *               for it (an estimate: read without a lock).
 *
 * High-water mark, per region: 1 + the highest entry its worker ever
 * parked a connection in since the region's reset (a worker fills its
 * region from the start). Written by the owning worker before the CAS that
 * parks such an entry, set to 0 by the region's reset; backends look no
 * further than it when they look for their pool's connections.
 *
 * Waiting: a backend that finds none of its pool's connections parked
 * while the pool has all it may have (lent, or live) sleeps on the
 * condition variable of the pool's channel (key hash % the number of
 * channels, bgw_proxy.debug_wait_channels: 1024 but in tests): it joins
 * the channel's list, then looks at the entries again, then sleeps.
 * A backend giving a connection back (any state), and a worker parking
 * one, signal the channel after their CAS, which wakes the longest
 * waiter. So either the waiter sees the connection back or it is on the
 * list when the signal comes. Two pools may share a channel; then the
 * signal could wake the other pool's waiter, which finds nothing and
 * sleeps again, while the pool's own waiter sleeps on until its 1 s
 * timeout. So a waiter notes its pool on the channel before it joins the
 * list (lend_channel_note_waiter: the pool's key hash, or "several" once
 * a second pool's waiter came), and a channel noted "several" is woken
 * all at once (lend_channel_signal): each waiter looks again for its own
 * pool. The note stays until the server restarts; with 1024 channels few
 * pools share one.
 */
#pragma once

#include "common/pg_headers.h"

namespace bgw {

enum LendState : uint32 {
    LEND_FREE = 0,
    LEND_PARKED = 1,
    LEND_LENT = 2,
    LEND_BROKEN = 3,
};

constexpr int kLendPerWorker = 128;  /* entries per worker's region */
constexpr int kLendKeyLen = 1024;    /* a longer pool key is never lent */
constexpr int kDirectPrepared = 16;  /* direct calls' prepared statements per connection */

struct LendEntry {
    pg_atomic_uint64 word;           /* generation << 3 | LendState */
    pg_atomic_uint32 want;
    pg_atomic_uint64 returned_us;
    pg_atomic_uint64 calls;
    pg_atomic_uint32 live;
    /* written by the owning worker while FREE */
    int worker;                      /* its index */
    int32 pid;                       /* its pid, for pidfd_getfd */
    int fd;                          /* the socket's number in the worker */
    uint64 ino;                      /* the socket's inode: the copy is checked against it */
    int32 server_version;            /* PQserverVersion: binary results from 10 on */
    bool cancel_known;               /* the remote backend's pid and secret key, for a backend
                                      * that must cancel the statement itself (exiting) */
    uint32 cancel_pid;
    uint32 cancel_key;
    int64 config_version;            /* the cluster version its key was last used with (-1: none) */
    uint64 key_hash;
    uint32 key_len;
    char key[kLendKeyLen];
    /* Direct calls' prepared statements on this connection, named
     * "bgwd_<statement hash>": the hash in slot hash % kDirectPrepared (0:
     * none; a new one closes the one in its slot). Written and read by the
     * backend that has the connection; zeroed by the owning worker when it
     * puts a new connection in the entry. */
    uint64 prepared[kDirectPrepared];
    bool no_prepare;                 /* a statement vanished or clashed (a transaction-mode
                                      * pooler in between): unnamed statements only */
    /* written by the backend that has the connection, before it gives it
     * back BROKEN; read by the owning worker after taking it back (and
     * `drain` set false by it whenever it parks the connection) */
    bool drain;                      /* the statement went out whole: the worker cancels it and
                                      * reads the socket to its ReadyForQuery (else: closes) */
    uint32 drain_head_len;           /* the next message's first bytes already read (< 5) */
    char drain_head[5];
    uint64 drain_skip;               /* bytes of a message begun that are still to come */
};

inline uint64 lend_word(uint64 generation, LendState st) { return generation << 3 | uint64(st); }
inline LendState lend_state(uint64 word) { return LendState(word & 7); }
inline uint64 lend_generation(uint64 word) { return word >> 3; }

/*
 * Binary or text, per statement (query and declared result types), for
 * direct calls (backend/direct_call.cpp): kVerdicts atomics after the
 * entries, each hash & ~1 | binary, written by any backend that learned it
 * from a worker's answer, read by any backend. A slot holding another
 * statement's hash is simply not known.
 */
constexpr int kVerdicts = 4096;
/* -1: not known; 0: text; 1: binary */
int lend_verdict(uint64 statement_hash);
void lend_verdict_set(uint64 statement_hash, bool binary);

ConditionVariable *lend_channel(uint64 key_hash);
/* A backend about to join the channel's list to wait for pool key_hash. */
void lend_channel_note_waiter(uint64 key_hash);
/* A connection of pool key_hash was given back or parked: wake its
 * longest waiter, or every waiter of a channel several pools wait on. */
void lend_channel_signal(uint64 key_hash);

/* Entries of worker w's region that may ever have been parked: those
 * below [w * kLendPerWorker + lend_region_used(w)). lend_region_note_use:
 * the owning worker, before parking a connection in `slot`. */
int lend_region_used(int worker);
void lend_region_note_use(int worker, int slot);

Size lend_table_size(void);
void lend_table_init(void);
int lend_table_capacity(void);            /* entries in all */
LendEntry *lend_entry(int i);             /* worker w's region: [w * kLendPerWorker, +kLendPerWorker) */
uint64 lend_key_hash(const char *key, size_t len);

/* Every entry of worker w to FREE with a new generation (at its start and
 * exit: what its previous incarnation lent is no longer its to take back;
 * a backend still holding such a connection closes it when done). */
void lend_region_reset(int worker);

} // namespace bgw
