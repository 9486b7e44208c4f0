/*
 * conn_pool.hpp — a worker's remote connections and the jobs run on them.
 *
 * The pool is a set of connections grouped by key (final connection string,
 * client encoding, role), each driven as an explicit state machine with
 * non-blocking libpq:
 *
 *   Resolving --host names resolved (resolver.hpp)--> Connecting
 *   Connecting --PQconnectPoll ok--> Idle <--------------------+
 *   Idle --job assigned--> Busy --last result read, tx idle--> |
 *   Busy --job abandoned--> Cancelling --results drained-----> +
 *   any --error / timeout / EOF / lifetime--> closed (PQfinish, gone)
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
 * connection of its key, or a new one while the key has fewer than
 * max_per_key connections, or waits in the key's FIFO until one is idle.
 * What the statement produces goes to the job's QuerySink; the sink can
 * refuse more rows for now (backpressure), and the connection then stops
 * reading its socket until resume() is called.
 *
 * Nothing here blocks: the owner (the worker's event loop) waits for the
 * sockets given by for_each_socket() and the deadline next_deadline(), then
 * calls on_socket() / on_timer().
 *
 * Pure C++ + libpq: no PostgreSQL server header; callbacks must not throw.
 */
#pragma once

#include "common/pure_cxx.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <libpq-fe.h>

namespace bgw {

using Clock = std::chrono::steady_clock;

/* Receives what one job produces. Exactly one of on_done/on_error ends it. */
class QuerySink {
public:
    virtual ~QuerySink() = default;
    virtual bool can_accept() = 0;                 /* false: pause reading */
    virtual void on_describe(const PGresult *res) = 0; /* column names, before the first row */
    virtual void on_row(const PGresult *row) = 0;  /* PGRES_SINGLE_TUPLE, text format */
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
     * binary? null: results always in text (see conn_pool.cpp) */
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

class Connection;

struct Job {
    JobSpec spec;
    QuerySink *sink = nullptr;
    Connection *conn = nullptr;      /* set while running */
    Clock::time_point wait_until = Clock::time_point::max(); /* while queued */
    Clock::time_point queued_at = Clock::now();
};

enum class ConnState { Resolving, Connecting, Idle, Busy, Cancelling };

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
 * connection closes, with the stat_ref of the job it was opened for. Must
 * not throw. */
class PoolObserver {
public:
    virtual ~PoolObserver() = default;
    virtual void connected(int64_t stat_ref) = 0;
    virtual void disconnected(int64_t stat_ref) = 0;
};

class Pool {
public:
    Pool() = default;
    ~Pool();
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;

    void set_limits(const PoolLimits &l) { limits_ = l; }
    void set_observer(PoolObserver *o) { observer_ = o; }

    /* Start (or queue) a job. The pool owns it until its sink hears
     * on_done/on_error, or until abandon(). *handle is set to the job first
     * thing; the sink must clear it when the job ends. */
    void submit(JobSpec spec, QuerySink *sink, Job **handle);

    /* The caller no longer wants this job's results: a running statement is
     * cancelled, a waiting job is dropped. The Job* is invalid afterwards. */
    void abandon(Job *job);

    /* The job's sink can accept rows again: continue reading. */
    void resume(Job *job);

    /* Event loop interface. events: 1 = readable, 2 = writable; id is
     * unique per connection (a closed socket's number is soon reused). */
    void for_each_socket(const std::function<void(int sock, int events, Connection *c, uint64_t id)> &fn) const;
    /* libpq may replace a connecting socket with another of the same
     * number: while this is true the wait set must be rebuilt each time. */
    bool any_connecting() const;
    void on_socket(Connection *c, bool readable, bool writable);
    void on_timer(Clock::time_point now);
    Clock::time_point next_deadline() const;   /* time_point::max() if none */

    /* Retire connections: idle ones are closed now, the others as soon as
     * their statement ends (they serve no new job). By key: the
     * configuration behind it changed. By database: DROP DATABASE of that
     * name is waiting for the sessions connected to it to leave. */
    void retire_key(const std::string &key);
    void retire_database(const std::string &dbname);

    /* Close everything politely (Terminate message; running statements are
     * cancelled first), e.g. at worker exit. May block briefly. */
    void close_all();

    PoolCounts counts() const;
    /* false when the key has no connection and no waiting job */
    bool key_counts(const std::string &key, KeyCounts &out) const;
    /* every key that has a connection or a waiting job */
    void for_each_key(const std::function<void(const std::string &key, const KeyCounts &n)> &fn) const;
    uint64_t connects() const { return connects_; }

private:
    friend class Connection;
    struct KeyPool {
        std::list<Connection *> conns;
        std::deque<Job *> waiting;
    };

    void dispatch(KeyPool &kp);
    void retire_if(const std::function<bool(const Connection &)> &which, const char *reason);
    void reap();
    void connection_idle(Connection *c);
    void connection_failed(Connection *c, Job *job, const std::string &msg);
    void job_finished(Job *job);

    std::map<std::string, KeyPool> keys_;
    PoolLimits limits_;
    PoolObserver *observer_ = nullptr;
    uint64_t connects_ = 0;
    uint64_t connection_ids_ = 0;
};

} // namespace bgw
