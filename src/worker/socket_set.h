/*
 * socket_set.h — the worker's set of pooled sockets, kept incrementally.
 *
 * The pool tells us (SocketWatcher) when a connection's socket or the
 * events it waits for change; we keep an epoll set in step with it, so a
 * turn of the event loop costs what arrived, not what is pooled: an idle
 * connection costs nothing until its socket says something. The epoll
 * descriptor itself sits in the worker's WaitEventSet (with its latch and
 * postmaster death), readable when any pooled socket is ready.
 *
 * Where epoll is missing (not Linux), open() fails and the event loop falls
 * back to rebuilding a WaitEventSet from the pool's sockets when they change.
 *
 * Pure C++ (no server header): the pool's callbacks land here and must not
 * throw; a registration that cannot be stored marks the set broken, and the
 * loop then rebuilds it from the pool (see broken()). A connection watched with
 * no events (a job paused by backpressure) stays registered but out of the
 * epoll set, so its unread socket does not wake us on every turn.
 */
#pragma once

#include "pool/conn_pool.hpp"

#include <cstdint>
#include <unordered_map>

namespace bgw {

class SocketSet final : public SocketWatcher {
public:
    SocketSet() = default;
    ~SocketSet() override;
    SocketSet(const SocketSet &) = delete;
    SocketSet &operator=(const SocketSet &) = delete;

    /* Create the epoll set; false where there is none (use the fallback). */
    bool open();
    int fd() const { return epfd_; }

    void watch(PoolSocket *s, uint64_t id, int sock, int events) noexcept override;
    void forget(PoolSocket *s, uint64_t id) noexcept override;

    /* A registration failed (out of memory, epoll_ctl error): rebuild, by
     * unsetting the pool's watcher, reset(), and setting it again (the pool
     * then tells what it told before: its own record stays true). */
    bool broken() const { return broken_; }
    void reset();

    /* Ready sockets, without waiting: fn(PoolSocket *, readable, writable)
     * for each. A connection forgotten since it became ready is skipped. */
    template <typename F>
    void drain(F &&fn);

    size_t size() const { return regs_.size(); }

private:
    struct ReadyEvent {
        uint32_t events;         /* 1 readable (or error, hang-up), 2 writable */
        uint64_t id;
    };
    struct Reg {
        PoolSocket *owner;
        int sock;                /* -1: not in the epoll set */
        int events;              /* 1 readable, 2 writable */
    };
    void remove_from_epoll(uint64_t id, Reg &r) noexcept;
    int ready(ReadyEvent *out, int max) noexcept;
    PoolSocket *lookup(uint64_t id, int *events_out) const;

    int epfd_ = -1;
    bool broken_ = false;
    std::unordered_map<uint64_t, Reg> regs_;
    /* which registration holds a socket number: libpq may close a socket
     * and the number be reused by another connection, so a stale number
     * must never remove the new owner's registration */
    std::unordered_map<int, uint64_t> owner_;
};

template <typename F>
void SocketSet::drain(F &&fn)
{
    constexpr int kMax = 64;
    ReadyEvent evs[kMax];
    int n = ready(evs, kMax);
    for (int i = 0; i < n; i++) {
        int want = 0;
        PoolSocket *c = lookup(evs[i].id, &want);
        if (!c)
            continue;
        /* errors and hang-ups are read like data: libpq finds out what */
        bool readable = (evs[i].events & 1) != 0;
        bool writable = (evs[i].events & 2) != 0;
        fn(c, readable, writable);
    }
}

} // namespace bgw
