/*
 * cancel_sender.hpp — remote cancel requests, sent without ever blocking a
 * worker, each with a deadline, each on its own.
 *
 * A cancel request is a connection of its own to the remote's postmaster:
 * one 16-byte packet (the backend's pid and secret key), then the
 * postmaster closes it once the backend has been signalled. libpq 15 only
 * has the blocking PQcancel(), which waits for that close with no deadline:
 * a remote that accepts TCP but never answers (a frozen server) would hold
 * whoever called it until it thaws. So the pool sends cancels itself, as
 * non-blocking sockets driven by the worker's event loop like its
 * connections: a request that gets no answer by its deadline is dropped,
 * and requests to different remotes never wait for each other.
 *
 * The secret key is not exposed by libpq 15's API: it is read from the
 * PGcancel libpq builds (see cancel_sender.cpp for how it is checked).
 * Where that check fails (a libpq whose layout we do not know), the request
 * falls back to PQcancel() on a helper thread (helper_threads.hpp), which
 * keeps cancels working but without the deadline.
 *
 * Pure C++ + libpq.
 */
#pragma once

#include "common/pure_cxx.h"
#include "pool/conn_pool.hpp"

#include <atomic>
#include <list>
#include <memory>

namespace bgw {

/* What became of a cancel request, as the connection it was sent for reads
 * it (atomic: the fallback sets it from a helper thread). */
enum class CancelOutcome : int {
    Pending,    /* on its way */
    Delivered,  /* the remote postmaster took it and closed the request */
    NotSent,    /* it never reached the postmaster: it cannot hit anything later */
    Unknown,    /* dropped at its deadline after it was sent: it may still arrive */
};

class CancelRequest;

/* The remote backend's pid and secret key of a connection, as a
 * CancelRequest carries them; false where this libpq's PGcancel cannot be
 * read (see cancel_sender.cpp). For a process that sends the request itself
 * (a backend ending a direct call, backend/direct_call.cpp). */
bool cancel_key_of(PGconn *conn, uint32_t &pid, uint32_t &key) noexcept;

/* The pool's cancel requests in flight. Sockets are reported to the pool's
 * SocketWatcher like connections' sockets (ids from the same counter). */
class CancelSender {
public:
    CancelSender();
    ~CancelSender();
    CancelSender(const CancelSender &) = delete;
    CancelSender &operator=(const CancelSender &) = delete;

    /* The watcher told of request sockets; the new one is told of every
     * socket there is now (the old one forgets them). */
    void set_watcher(SocketWatcher *w) noexcept;

    /* Cancel the statement running on `conn` now; the request is given up
     * at `deadline`. Null if none could be made (out of memory, no socket):
     * the caller then closes the connection instead. Never throws. */
    CancelTicket send(PGconn *conn, uint64_t id, Clock::time_point deadline) noexcept;

    /* A request's socket (a PoolSocket of Kind::Cancel) is ready. Never
     * destroys a request: on_timer() does. */
    void on_io(PoolSocket &s) noexcept;
    /* Deadlines; destroys the requests that ended. */
    void on_timer(Clock::time_point now) noexcept;
    Clock::time_point next_deadline() const;
    bool any() const { return !requests_.empty(); }

    void for_each_socket(const std::function<void(int sock, int events, PoolSocket *s, uint64_t id)> &fn) const;

    /* At exit: wait for the requests in flight, with poll(), until they
     * all ended or `until`; the rest are dropped. */
    void finish(Clock::time_point until) noexcept;

private:
    void end(CancelRequest &r, CancelOutcome outcome) noexcept;

    std::list<std::unique_ptr<CancelRequest>> requests_;
    SocketWatcher *watcher_ = nullptr;
};

} // namespace bgw
