/*
 * conn_pool.hpp — a worker's remote connections and the jobs run on them.
 *
 * The pool is a set of connections grouped by key (final connection string,
 * client encoding, role), each driven as an explicit state machine with
 * non-blocking libpq:
 *
 *   Resolving --host names resolved (resolver.hpp)--> Connecting
 *   Connecting --PQconnectPoll ok--> Idle <-----------------------+
 *   Idle --job assigned--> Busy --last result read, tx idle-----> |
 *   Busy --job abandoned--> Cancelling --drained, cancel taken--> +
 *   Idle --nothing waits, parked (ConnectionLender)--> Lent --taken back--> Idle
 *   any --error / timeout / EOF / lifetime / retired--> Closing (destroyed)
 *
 * A connection's state is the list it is on: each key keeps one list per
 * state, so the statistics (counts(), key_counts()) are list sizes and
 * running totals, and an idle connection is found without a search. One
 * function changes a state, Pool::set_state(), and it refuses a transition
 * the diagram does not have (the connection is then closed: a state we
 * cannot trust is never reused). One function closes, Pool::close(): it
 * records the reason (a job still running on the connection gets it as the
 * detail of its error), puts a job waiting for the connection back at the
 * head of its key's queue and tells the observer. The connection object
 * itself is destroyed (PQfinish) later, outside on_socket(), see there.
 * Connections live in pool.cpp (ownership, lists, counts, dispatch) and
 * connection.cpp (libpq, one job at a time); a Connection asks its pool for
 * every change through the ConnectionHost interface below.
 *
 * Statements are prepared once per connection and query text (a generic
 * plan then spares the remote its parse and plan on every call). A
 * prepared statement is also described once: if every column it returns
 * is of a built-in type whose binary form is the same on every server
 * version we talk to (no OIDs inside, no text encoding), its results are
 * asked for in binary; otherwise, and for unprepared statements, in text. If the
 * remote says a statement it prepared does not exist (a transaction-mode
 * pooler such as pgbouncer in between), the connection stops preparing and
 * the call is sent again unprepared: nothing ran remotely, so that is safe.
 *
 * A job is one statement for one target of a call. It runs on an idle
 * connection of its key (the one idle most recently), or a new one while
 * the key has fewer than max_per_key connections, or waits in the key's
 * FIFO until one is idle. What the statement produces goes to the job's
 * QuerySink; the sink can refuse more rows for now (backpressure), and the
 * connection then stops reading its socket until resume() is called.
 *
 * Nothing here blocks: the owner (the worker's event loop) waits for the
 * sockets given by for_each_socket() (or kept up to date by a SocketWatcher)
 * and the deadline next_deadline(), then calls on_socket() / on_timer().
 *
 * Pure C++ + libpq: no PostgreSQL server header. Callbacks into sinks,
 * observers and watchers must not throw: they run inside the pool's own
 * bookkeeping, which an exception would leave half done, and the worker
 * calls the pool from code that PostgreSQL errors must not unwind through.
 */
#pragma once

#include "common/pure_cxx.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <libpq-fe.h>

namespace bgw {

using Clock = std::chrono::steady_clock;

enum class CancelOutcome : int;
using CancelTicket = std::shared_ptr<std::atomic<CancelOutcome>>; /* cancel_sender.hpp */

/* Receives what one job produces. Exactly one of on_done/on_error ends it. */
class QuerySink {
public:
    virtual ~QuerySink() = default;
    virtual bool can_accept() = 0;                 /* false: pause reading */
    virtual void on_describe(const PGresult *res) = 0; /* column names, before the first row */
    virtual void on_row(const PGresult *row) = 0;  /* PGRES_SINGLE_TUPLE, in the formats on_describe gave */
    virtual void on_notice(const PGresult *notice) = 0;
    /* res is null for a connection-level failure: then sqlstate, message and
     * detail (libpq's own text) say what happened */
    virtual void on_error(const PGresult *res, const char *sqlstate, const std::string &message,
                          const std::string &detail) = 0;
    virtual void on_done(uint64_t rows) = 0;
};

/* A result column as the proxy function declares it. */
struct ResultColumn {
    std::string name;                /* empty: the function's single, scalar result */
    uint32_t type = 0;
};

struct JobSpec {
    std::string key;                 /* pool key: connstr + encoding + role */
    std::string connstr;
    std::string user;                /* empty: as the connection string says */
    std::string password;            /* empty: none given */
    bool require_password = false;   /* the remote must have asked for the password */
    std::string encoding;            /* client_encoding for a new connection */
    int connect_timeout_ms = 0;      /* 0: none */
    int query_timeout_ms = 0;        /* 0: none */
    bool prepare = true;             /* run as a prepared statement of the connection */
    /* the caller's binary policy: may a column of this type OID come in
     * binary? null: results always in text (see connection.cpp) */
    bool (*binary_type_ok)(uint32_t type) = nullptr;
    std::vector<ResultColumn> result_types; /* binary only where the remote returns exactly these */
    std::string statement_key;       /* set by Pool::submit: query + result types, keys prepared statements */
    int max_connections = 0;         /* this pool's limit; 0: PoolLimits::max_per_key */
    int lifetime_s = 0;              /* close connections older than this (0: never) */
    int pool_wait_timeout_ms = 0;    /* give up waiting for a connection (0: never) */
    int64_t stat_ref = -1;           /* opaque to the pool: given back to the PoolObserver */
    std::string query;
    std::vector<std::string> params;
    std::vector<bool> param_null;
};

/* Keys made of another: the other, this, more (a node of a multi-host
 * partition, worker/node_router.h). */
constexpr char kKeyPartSeparator = '\x1e';

class Connection;
class CancelSender;
struct KeyPool;    /* one key's connections and queue (connection.hpp) */

/* Something of the pool's with a socket to wait for: a connection, or a
 * cancel request on its way to a remote postmaster (cancel_sender.hpp).
 * The event loop only gives it back to Pool::on_socket(). */
class PoolSocket {
public:
    enum class Kind { Connection, Cancel };
    explicit PoolSocket(Kind k) : kind(k) {}
    virtual ~PoolSocket() = default;
    const Kind kind;
};

/* Jobs are owned by the pool (the key's queue, then the connection that
 * runs it) from submit() until they end; callers hold a Job* handle. */
struct Job {
    JobSpec spec;
    QuerySink *sink = nullptr;
    Connection *conn = nullptr;      /* set while running */
    Clock::time_point wait_until = Clock::time_point::max(); /* while queued */
    Clock::time_point queued_at = Clock::now();
};

/* Closing: marked to close, the reason recorded; counted nowhere, no
 * socket watched, destroyed by the pool's next reap. */
enum class ConnState { Resolving, Connecting, Idle, Lent, Busy, Cancelling, Closing };
constexpr int kConnStates = 7;

/* Lends idle connections to other processes (worker/lender.h). A lent
 * connection (state Lent) may be in another process's hands: the pool does
 * not read, write or watch its socket, and runs nothing on it, until it
 * has taken it back. A connection keeps its entry (`slot`) from its first
 * lending until it closes, so the processes that copied its socket keep
 * their copies across take-backs. Must not throw. */
class ConnectionLender {
public:
    virtual ~ConnectionLender() = default;
    /* Park an idle connection of `key` in its entry `slot` (-1: none yet):
     * the entry, or -1 (then it stays Idle). sock_ino: its socket's inode. */
    virtual int lend(int slot, const std::string &key, PGconn *pg, uint64_t sock_ino, int64_t stat_ref) = 0;
    enum class Back { Yes, InUse, Drain, Broken };
    /* Where the stream of a connection given back mid-statement stands:
     * `head` holds the first bytes of the next message (head_len < 5), or
     * `skip` bytes of a message begun are still to come. */
    struct DrainFrom {
        uint64_t skip = 0;
        char head[5] = {};
        int head_len = 0;
    };
    /* Take back entry `slot`'s connection. InUse: another process has it;
     * the owner is told when it comes back and then calls Pool::on_returns.
     * Drain: given back mid-statement (a cancel, an error of the caller),
     * the statement sent whole: to be cancelled and read to its end from
     * *from, then reused. Broken: given back in a state nobody knows: to
     * be cancelled and closed. */
    virtual Back take_back(int slot, DrainFrom *from) = 0;
    /* The connection of entry `slot` closes: the entry is free. */
    virtual void release(int slot) = 0;
    /* Given back broken, waiting to be taken back (and closed). */
    virtual bool broken(int slot) = 0;
    /* When another process last gave it back (time_point::min(): never) */
    virtual Clock::time_point last_returned(int slot) = 0;
};

struct PoolLimits {
    int max_per_key = 32;
    int idle_timeout_s = 300;        /* 0: never */
    int cancel_wait_ms = 5000;       /* a cancel that does not end the statement by then closes it */
};

struct PoolCounts {
    uint32_t open = 0, idle = 0, active = 0, connecting = 0, cancelling = 0;
};

/* One key's connections and its queue of jobs waiting for one. */
struct KeyCounts : PoolCounts {
    uint32_t waiting = 0;
    Clock::time_point oldest_wait = Clock::time_point::max(); /* queued_at of the first waiting job */
};

/* Told when a connection opens (the handshake succeeded) and when an open
 * connection closes (with why), with the stat_ref of the job it was opened
 * for. Must not throw. */
class PoolObserver {
public:
    virtual ~PoolObserver() = default;
    virtual void connected(int64_t stat_ref) = 0;
    virtual void disconnected(int64_t stat_ref, const char *reason) = 0;
};

/* Lets an event loop keep its wait set up to date instead of rebuilding it
 * from for_each_socket(). Called only when a PoolSocket's (socket, events)
 * changed, from inside the pool's calls; must not throw and must not call
 * the pool back. id is unique per connection or cancel request (socket
 * numbers are reused).
 *   watch:  from now on wait for `events` (1 readable, 2 writable, 0 none:
 *           the socket stays open but nothing is wanted, e.g. a job paused
 *           by backpressure) on `sock`. Never called with sock < 0: a
 *           socket that goes away is forgotten instead.
 *   forget: the socket last given by watch() is closed or about to be:
 *           drop it. Comes before a watched connection is destroyed, when
 *           it is closed; and when libpq replaced the socket while
 *           connecting (another address or host of the connection string,
 *           often under the same number), followed by watch() of the new.
 * So watch() calls that start a socket and forget() calls balance. */
class SocketWatcher {
public:
    virtual ~SocketWatcher() = default;
    virtual void watch(PoolSocket *s, uint64_t id, int sock, int events) = 0;
    virtual void forget(PoolSocket *s, uint64_t id) = 0;
};

/* What a Connection asks of the pool that owns it (connection.cpp). The
 * pool implements it privately: only its connections can call it. */
class ConnectionHost {
public:
    /* The one way to change a connection's state (not to Closing: close()).
     * False, and the connection is closed, for a transition the state
     * machine does not have. */
    virtual bool set_state(Connection &c, ConnState to) = 0;
    /* The one way to close: reason is a string literal (kept, not copied). */
    virtual void close(Connection &c, const char *reason) noexcept = 0;
    /* The socket or the events the connection waits for may have changed. */
    virtual void update_interest(Connection &c) = 0;
    virtual void opened(Connection &c) = 0;          /* the handshake succeeded */
    virtual void became_idle(Connection &c) = 0;     /* give it its next job */
    /* the job a connection was opened for cannot have it: tell its sink */
    virtual void connect_failed(std::unique_ptr<Job> job, const std::string &why) = 0;
    virtual const PoolLimits &limits() const = 0;
    /* Cancel the statement running on conn (cancel_sender.hpp), given up
     * after limits().cancel_wait_ms. The request belongs to the pool: it
     * goes on if the connection closes. Null: none could be made. */
    virtual CancelTicket send_cancel(PGconn *conn) noexcept = 0;

protected:
    ~ConnectionHost() = default;
};

class Pool : private ConnectionHost {
public:
    Pool();
    ~Pool();
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;

    /* At once: a key over a lowered limit closes its surplus idle
     * connections now, its busy ones as they end and its opening ones
     * once connected (trim(), became_idle()); a raised one serves the
     * waiting jobs now. */
    void set_limits(const PoolLimits &l);
    void set_observer(PoolObserver *o) { observer_ = o; }
    /* Null: none. A new watcher is told every socket there is now (the old
     * one forgets them); it must outlive the pool or be unset first. */
    void set_watcher(SocketWatcher *w);
    /* Null: none (connections are never lent). Set before the first job;
     * it must outlive the pool. */
    void set_lender(ConnectionLender *l) { lender_ = l; }
    /* A lent connection may be back (wanted, or given back broken): take
     * back what jobs wait for, close what expired, was retired or broke.
     * Cost: the lent connections. */
    void on_returns();

    /* Start (or queue) a job. The pool owns it until its sink hears
     * on_done/on_error, or until abandon(). *handle is set to the job first
     * thing; the sink must clear it when the job ends. */
    void submit(JobSpec spec, QuerySink *sink, Job **handle);

    /* The caller no longer wants this job's results: a running statement is
     * cancelled, a waiting job is dropped. The Job* is invalid afterwards,
     * and its sink hears nothing more. */
    void abandon(Job *job);

    /* The job's sink can accept rows again: continue reading. */
    void resume(Job *job);

    /* Event loop interface. events: 1 = readable, 2 = writable; id is
     * unique per connection or cancel request (a closed socket's number is
     * soon reused). */
    void for_each_socket(const std::function<void(int sock, int events, PoolSocket *s, uint64_t id)> &fn) const;
    /* libpq may replace a connecting socket with another of the same
     * number: while this is true the wait set must be rebuilt each time
     * (or use a SocketWatcher, which is told of the replacement). */
    bool any_connecting() const;
    /* Never destroys a connection or a cancel request, so every PoolSocket*
     * of one batch of ready sockets stays valid through the batch; what it
     * closes is destroyed by the next other call (on_timer at the latest:
     * the loop must call on_timer every turn, next_deadline() is then now). */
    void on_socket(PoolSocket *s, bool readable, bool writable);
    void on_timer(Clock::time_point now);
    Clock::time_point next_deadline() const;   /* time_point::max() if none */

    /* Retire connections: idle ones are closed now, the others as soon as
     * their statement ends (they serve no new job). By key: the
     * configuration behind it changed; also every key made of it, the key
     * followed by kKeyPartSeparator and more. By database: DROP DATABASE of that
     * name is waiting for the sessions connected to it to leave. */
    void retire_key(const std::string &key);
    void retire_database(const std::string &dbname);
    /* Close every idle connection now; busy ones are left alone. */
    void close_idle();

    /* Close everything (Terminate messages, sent without waiting), e.g. at
     * worker exit. Running statements are cancelled when `cancels_until`
     * is ahead: the cancel requests in flight then get until then (with
     * poll(); the only wait in the pool), whatever the remotes do. Sinks
     * are not told. */
    void close_all(Clock::time_point cancels_until = Clock::now()) noexcept;

    /* O(1): kept up to date by set_state() */
    PoolCounts counts() const;
    /* false when the key has no connection and no waiting job; O(log keys) */
    bool key_counts(const std::string &key, KeyCounts &out) const;
    /* every key that has a connection or a waiting job */
    void for_each_key(const std::function<void(const std::string &key, const KeyCounts &n)> &fn) const;
    uint64_t connects() const { return connects_; }

    /* Only the pool can make one: it guards the pool's bookkeeping kept on
     * a Connection (Connection::membership), so nothing else writes it. */
    class Access {
        friend class Pool;
        Access() {}
    };

private:
    /* ConnectionHost */
    bool set_state(Connection &c, ConnState to) override;
    void close(Connection &c, const char *reason) noexcept override;
    void update_interest(Connection &c) override;
    void opened(Connection &c) override;
    void became_idle(Connection &c) override;
    void connect_failed(std::unique_ptr<Job> job, const std::string &why) override;
    const PoolLimits &limits() const override { return limits_; }
    CancelTicket send_cancel(PGconn *conn) noexcept override;

    KeyPool &key_pool(const std::string &key);
    void dispatch(KeyPool &kp);
    int limit_of(const KeyPool &kp) const;
    /* close idle connections while the key has more than its limit */
    void trim(KeyPool &kp);
    void open_connection(KeyPool &kp);
    /* Idle with nothing to do: lend it if it can be */
    void park(Connection &c);
    /* Lent: true if it is Idle again; false if it is in use elsewhere, or
     * was given back broken (then it is closed) */
    bool take_back(Connection &c);
    /* Lent: close it if it expired or was retired, once it is back */
    void settle_lent(Connection &c, Clock::time_point now);
    Connection &adopt(KeyPool &kp, std::unique_ptr<Connection> c, ConnState first);
    std::vector<Connection *> live_connections() const;
    void retire_if(const std::function<bool(const Connection &)> &which, const char *reason);
    /* destroy: also free the closing connections (not inside on_socket) */
    void reap(bool destroy = true);

    std::map<std::string, std::unique_ptr<KeyPool>> keys_;
    std::unique_ptr<CancelSender> cancels_;
    uint32_t totals_[kConnStates] = {};   /* connections per state, all keys */
    PoolLimits limits_;
    PoolObserver *observer_ = nullptr;
    SocketWatcher *watcher_ = nullptr;
    ConnectionLender *lender_ = nullptr;
    uint64_t connects_ = 0;
    uint64_t connection_ids_ = 0;
};

} // namespace bgw
