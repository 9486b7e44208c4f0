/*
 * lender.cpp — see lender.h; the entry protocol is in lend_table.h.
 */
#include "worker/lender.h"
#include "pool/cancel_sender.hpp"

#include "shared/lend_table.h"
#include "shared/shmem.h"

#include "common/pg_headers.h"

#include <sys/prctl.h>

namespace bgw {

void Lender::start(int worker)
{
    /* Backends copy our sockets with pidfd_getfd, which Yama's
     * ptrace_scope = 1 allows only to processes we name: every process of
     * this server runs as our user and shares our memory anyway. (No Yama:
     * EINVAL, nothing to do.) */
    (void) prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    worker_ = worker;
    first_ = worker * kLendPerWorker;
    reserved_.assign(kLendPerWorker, 0);
    lend_region_reset(worker);
}

void Lender::stop()
{
    if (worker_ >= 0)
        lend_region_reset(worker_);
    std::fill(reserved_.begin(), reserved_.end(), 0);
}

int Lender::lend(int slot, const std::string &key, PGconn *pg, uint64_t sock_ino, int64_t)
{
    if (worker_ < 0 || key.size() > size_t(kLendKeyLen) || key.find(kKeyPartSeparator) != std::string::npos ||
        PQsslInUse(pg) || PQgssEncInUse(pg) || PQsocket(pg) < 0 || sock_ino == 0)
        return -1;
    if (slot < 0) {
        for (int i = 0; i < kLendPerWorker; i++)
            if (!reserved_[size_t(i)]) {
                slot = first_ + i;
                break;
            }
        if (slot < 0)
            return -1; /* the region is full: this one stays with the worker */
        LendEntry *fresh = lend_entry(slot);
        memset(fresh->prepared, 0, sizeof(fresh->prepared)); /* a new session: none yet */
        fresh->no_prepare = false;
    }
    LendEntry *e = lend_entry(slot);
    uint64 w = pg_atomic_read_u64(&e->word);
    if (lend_state(w) != LEND_FREE)
        return -1; /* cannot be: an entry is only ever re-lent after take_back */
    reserved_[size_t(slot - first_)] = 1;
    /* FREE: no backend reads these until the CAS below publishes them */
    e->worker = worker_;
    e->pid = MyProcPid;
    e->fd = PQsocket(pg);
    e->ino = sock_ino;
    e->server_version = PQserverVersion(pg);
    e->cancel_known = cancel_key_of(pg, e->cancel_pid, e->cancel_key);
    auto v = versions_.find(key);
    e->config_version = v == versions_.end() ? -1 : v->second;
    e->key_hash = lend_key_hash(key.data(), key.size());
    e->key_len = uint32(key.size());
    memcpy(e->key, key.data(), key.size());
    e->drain = false;
    pg_atomic_write_u32(&e->want, 0);
    pg_atomic_write_u32(&e->live, 1);
    lend_region_note_use(worker_, slot);
    if (!pg_atomic_compare_exchange_u64(&e->word, &w, lend_word(lend_generation(w), LEND_PARKED)))
        return -1;
    /* a backend waiting for a connection of this pool (lend_table.h) */
    lend_channel_signal(e->key_hash);
    return slot;
}

ConnectionLender::Back Lender::take_back(int slot, DrainFrom *from)
{
    LendEntry *e = lend_entry(slot);
    uint64 w = pg_atomic_read_u64(&e->word);
    for (;;) {
        switch (lend_state(w)) {
        case LEND_FREE:
            return Back::Yes;
        case LEND_PARKED:
        case LEND_BROKEN:
            if (!pg_atomic_compare_exchange_u64(&e->word, &w, lend_word(lend_generation(w), LEND_FREE)))
                continue; /* w is what it is now */
            if (lend_state(w) == LEND_PARKED)
                return Back::Yes;
            if (!e->drain || e->drain_head_len > 4)
                return Back::Broken;
            from->skip = e->drain_skip;
            from->head_len = int(e->drain_head_len);
            memcpy(from->head, e->drain_head, sizeof(from->head));
            return Back::Drain;
        case LEND_LENT: {
            /* wanted, then look again: the backend giving it back either
             * sees `want` or has already given it back (lend_table.h) */
            pg_atomic_write_u32(&e->want, 1);
            pg_memory_barrier();
            uint64 now = pg_atomic_read_u64(&e->word);
            if (now == w)
                return Back::InUse;
            w = now;
            continue;
        }
        }
        return Back::InUse;
    }
}

void Lender::release(int slot)
{
    LendEntry *e = lend_entry(slot);
    pg_atomic_write_u32(&e->live, 0);
    uint64 w = pg_atomic_read_u64(&e->word);
    /* a new generation: the backends' copies of its socket are stale */
    while (!pg_atomic_compare_exchange_u64(&e->word, &w, lend_word(lend_generation(w) + 1, LEND_FREE))) {
    }
    if (slot >= first_ && slot < first_ + kLendPerWorker)
        reserved_[size_t(slot - first_)] = 0;
}

bool Lender::broken(int slot)
{
    return lend_state(pg_atomic_read_u64(&lend_entry(slot)->word)) == LEND_BROKEN;
}

Clock::time_point Lender::last_returned(int slot)
{
    uint64 us = pg_atomic_read_u64(&lend_entry(slot)->returned_us);
    if (us == 0)
        return Clock::time_point::min();
    /* steady_clock is CLOCK_MONOTONIC here, like node_clock_us() */
    return Clock::time_point(std::chrono::microseconds(us));
}

void Lender::note_version(const std::string &key, int64_t version) noexcept
{
    try {
        if (versions_.size() >= 100000)
            versions_.clear(); /* forgetting only sends calls through the worker */
        auto [it, added] = versions_.try_emplace(key, version);
        if (!added)
            it->second = std::max(it->second, version);
    } catch (...) {
        /* no memory: the key's calls go through the worker */
    }
}

} // namespace bgw
