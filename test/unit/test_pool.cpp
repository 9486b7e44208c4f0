/*
 * test_pool.cpp — the pool's state machine (src/pool/pool.cpp,
 * connection.cpp) against a fake server (pg_stub.hpp), driven by a small
 * poll() loop over for_each_socket / on_socket / on_timer. Every wait is
 * for a condition, bounded by a deadline: nothing sleeps and hopes.
 */
#include "unit_test.hpp"

#include "pg_stub.hpp"
#include "pool/conn_pool.hpp"

#include <map>
#include <poll.h>

using namespace bgw;

namespace {

constexpr int kWaitMs = 5000;

/* Records what a job produced, and the pool's counts while it ran. */
struct Sink : QuerySink {
    Pool *pool = nullptr;
    Job *handle = nullptr;       /* the caller's handle: cleared when the job ends */
    int describes = 0, endings = 0, notices = 0;
    std::vector<std::string> rows;
    bool done = false, failed = false;
    uint64_t done_rows = 0;
    std::string sqlstate, message, detail;
    PoolCounts during;           /* counts() when the first row came */
    int order = 0;               /* when it ended, among all sinks */
    static int &ended_so_far()
    {
        static int n = 0;
        return n;
    }

    bool can_accept() override { return true; }
    void on_describe(const PGresult *) override { describes++; }
    void on_row(const PGresult *r) override
    {
        if (rows.empty() && pool)
            during = pool->counts();
        rows.push_back(PQgetvalue(r, 0, 0));
    }
    void on_notice(const PGresult *) override { notices++; }
    void on_error(const PGresult *, const char *st, const std::string &msg, const std::string &det) override
    {
        failed = true;
        sqlstate = st ? st : "";
        message = msg;
        detail = det;
        end();
    }
    void on_done(uint64_t n) override
    {
        done = true;
        done_rows = n;
        end();
    }
    void end()
    {
        handle = nullptr;
        endings++;
        order = ++ended_so_far();
    }
    bool ended() const { return endings > 0; }
};

struct Observer : PoolObserver {
    int connected_n = 0, disconnected_n = 0;
    void connected(int64_t) override { connected_n++; }
    void disconnected(int64_t, const char *) override { disconnected_n++; }
};

/* Keeps what an event loop would: one socket per connection. */
struct Watcher : SocketWatcher {
    struct Entry {
        int sock;
        int events;
    };
    std::map<uint64_t, Entry> current;
    std::map<uint64_t, std::vector<std::string>> log; /* per connection: "w<sock>/<ev>", "f" */
    int starts = 0, forgets = 0, bad = 0;

    void watch(PoolSocket *, uint64_t id, int sock, int events) override
    {
        if (sock < 0)
            bad++;
        auto it = current.find(id);
        if (it == current.end())
            starts++;
        else if (it->second.sock == sock && it->second.events == events)
            bad++; /* told of no change */
        else if (it->second.sock != sock)
            bad++; /* a new socket must come after forget() */
        current[id] = Entry{sock, events};
        log[id].push_back("w" + std::to_string(sock) + "/" + std::to_string(events));
    }
    void forget(PoolSocket *, uint64_t id) override
    {
        if (current.erase(id) == 0)
            bad++;
        forgets++;
        log[id].push_back("f");
    }
};

struct Fixture {
    stub::PgStub server;
    Observer observer;
    Watcher watcher;
    Pool pool; /* after the watcher and observer: destroyed before them */

    explicit Fixture(int max_per_key = 4)
    {
        PoolLimits l;
        l.max_per_key = max_per_key;
        l.cancel_wait_ms = 3000;
        pool.set_limits(l);
        pool.set_observer(&observer);
        pool.set_watcher(&watcher);
    }

    JobSpec spec(const std::string &query, bool prepare = true) const
    {
        JobSpec s;
        s.connstr = server.conninfo();
        s.key = s.connstr;
        s.encoding = "UTF8";
        s.connect_timeout_ms = kWaitMs;
        s.prepare = prepare;
        s.query = query;
        return s;
    }

    void submit(Sink &sink, JobSpec s)
    {
        sink.pool = &pool;
        pool.submit(std::move(s), &sink, &sink.handle);
    }
    void submit(Sink &sink, const std::string &query, bool prepare = true) { submit(sink, spec(query, prepare)); }

    KeyCounts key() const
    {
        KeyCounts k;
        if (!pool.key_counts(spec("").key, k))
            return KeyCounts();
        return k;
    }

    /* The totals kept incrementally match the sum of the keys' lists. */
    void check_totals() const
    {
        PoolCounts sum;
        pool.for_each_key([&](const std::string &, const KeyCounts &k) {
            sum.open += k.open;
            sum.idle += k.idle;
            sum.active += k.active;
            sum.connecting += k.connecting;
            sum.cancelling += k.cancelling;
        });
        PoolCounts n = pool.counts();
        CHECK_EQ(n.open, sum.open);
        CHECK_EQ(n.idle, sum.idle);
        CHECK_EQ(n.active, sum.active);
        CHECK_EQ(n.connecting, sum.connecting);
        CHECK_EQ(n.cancelling, sum.cancelling);
        CHECK_EQ(n.open, n.idle + n.active + n.connecting + n.cancelling);
    }

    /* Run the pool as an event loop would until `until` holds; false if
     * it does not within ms. */
    bool drive(const std::function<bool()> &until, int ms = kWaitMs)
    {
        Clock::time_point give_up = Clock::now() + std::chrono::milliseconds(ms);
        while (!until()) {
            if (Clock::now() >= give_up)
                return false;
            std::vector<pollfd> fds;
            std::vector<PoolSocket *> conns;
            pool.for_each_socket([&](int sock, int events, PoolSocket *c, uint64_t) {
                if (!events)
                    return;
                fds.push_back(pollfd{sock, short(((events & 1) ? POLLIN : 0) | ((events & 2) ? POLLOUT : 0)), 0});
                conns.push_back(c);
            });
            long timeout = 20;
            Clock::time_point next = pool.next_deadline();
            if (next != Clock::time_point::max()) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
                timeout = std::max<long>(0, std::min<long>(timeout, long(left) + 1));
            }
            int n = poll(fds.data(), fds.size(), int(timeout));
            for (size_t i = 0; n > 0 && i < fds.size(); i++) {
                short r = fds[i].revents;
                if (r)
                    pool.on_socket(conns[i], r & (POLLIN | POLLHUP | POLLERR), r & (POLLOUT | POLLHUP | POLLERR));
            }
            pool.on_timer(Clock::now());
            check_totals();
        }
        return true;
    }

    /* Everything closed: the watcher forgot every socket it was given. */
    void check_watcher_balanced()
    {
        pool.close_all();
        CHECK_EQ(watcher.bad, 0);
        CHECK_EQ(watcher.starts, watcher.forgets);
        CHECK(watcher.current.empty());
        CHECK_EQ(observer.connected_n, observer.disconnected_n);
    }
};

} // namespace

TEST(job_connects_runs_and_connection_goes_idle)
{
    Fixture f;
    Sink s;
    f.submit(s, "rows 3 abc");
    REQUIRE(s.handle != nullptr);
    PoolCounts n = f.pool.counts();
    CHECK_EQ(n.connecting, 1);
    CHECK_EQ(n.open, 1);
    CHECK_EQ(f.key().waiting, 0); /* it waits for that connection, not in the queue */
    CHECK(f.pool.any_connecting());

    REQUIRE(f.drive([&] { return s.ended(); }));
    CHECK(s.done);
    CHECK_EQ(s.describes, 1);
    CHECK_EQ(s.done_rows, 3);
    REQUIRE(s.rows.size() == 3);
    CHECK_EQ(s.rows[0], "abc");
    CHECK(s.handle == nullptr);
    /* while its rows came the connection was busy */
    CHECK_EQ(s.during.active, 1);
    CHECK_EQ(s.during.connecting, 0);
    CHECK_EQ(s.during.open, 1);
    n = f.pool.counts();
    CHECK_EQ(n.idle, 1);
    CHECK_EQ(n.active, 0);
    CHECK_EQ(n.open, 1);
    CHECK(!f.pool.any_connecting());
    CHECK_EQ(f.pool.connects(), 1);
    CHECK_EQ(f.observer.connected_n, 1);

    /* busy again, seen from outside: a query the server holds */
    Sink h;
    f.submit(h, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    CHECK_EQ(f.pool.counts().active, 1);
    CHECK_EQ(f.pool.counts().idle, 0);
    CHECK_EQ(f.key().active, 1);
    f.server.release();
    REQUIRE(f.drive([&] { return h.ended(); }));
    CHECK(h.done);
    CHECK_EQ(h.rows.size(), 1);
    CHECK_EQ(f.pool.counts().idle, 1);
    f.check_watcher_balanced();
}

TEST(second_job_reuses_the_idle_connection)
{
    for (bool prepare : {true, false}) {
        Fixture f;
        Sink a, b;
        f.submit(a, "rows 1 first", prepare);
        REQUIRE(f.drive([&] { return a.ended(); }));
        f.submit(b, "rows 2 second", prepare);
        CHECK_EQ(f.pool.counts().active, 1); /* given the idle connection at once */
        REQUIRE(f.drive([&] { return b.ended(); }));
        CHECK(a.done);
        CHECK(b.done);
        CHECK_EQ(b.rows.size(), 2);
        CHECK_EQ(f.server.accepted(), 1);
        CHECK_EQ(f.pool.connects(), 1);
        CHECK_EQ(f.pool.counts().open, 1);
        f.check_watcher_balanced();
    }
}

TEST(limit_makes_the_second_job_wait_its_turn)
{
    Fixture f(1);
    Sink a, b, c;
    f.submit(a, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    f.submit(b, "rows 1 b");
    f.submit(c, "rows 1 c");
    KeyCounts k = f.key();
    CHECK_EQ(k.waiting, 2);
    CHECK_EQ(k.open, 1);
    CHECK_EQ(k.active, 1);
    CHECK(k.oldest_wait != Clock::time_point::max());
    /* a waiting job abandoned leaves the queue and hears nothing */
    f.pool.abandon(c.handle);
    CHECK_EQ(f.key().waiting, 1);
    /* nothing moves while the only connection is busy */
    CHECK(!f.drive([&] { return b.ended(); }, 100));
    CHECK_EQ(f.key().waiting, 1);

    f.server.release();
    REQUIRE(f.drive([&] { return a.ended() && b.ended(); }));
    CHECK(a.done);
    CHECK(b.done);
    CHECK(a.order < b.order);
    CHECK_EQ(c.endings, 0);
    CHECK_EQ(f.key().waiting, 0);
    CHECK_EQ(f.server.accepted(), 1);
    f.check_watcher_balanced();
}

TEST(idle_connection_closed_by_the_remote_is_dropped)
{
    Fixture f;
    Sink a;
    f.submit(a, "rows 1 a");
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK_EQ(f.pool.counts().idle, 1);

    /* noticed on its socket while pooled */
    f.server.close_client(1);
    REQUIRE(f.drive([&] { return f.pool.counts().open == 0; }));
    CHECK_EQ(f.observer.disconnected_n, 1);
    KeyCounts k;
    CHECK(!f.pool.key_counts(f.spec("").key, k));
    CHECK_EQ(f.watcher.current.size(), 0);

    Sink b;
    f.submit(b, "rows 1 b");
    REQUIRE(f.drive([&] { return b.ended(); }));
    CHECK(b.done);
    CHECK_EQ(f.server.accepted(), 2);

    /* noticed when a job would get it: the remote closed it just before */
    f.server.close_client(2);
    int sock = -1;
    f.pool.for_each_socket([&](int s, int, PoolSocket *, uint64_t) { sock = s; });
    REQUIRE(sock >= 0);
    pollfd p{sock, POLLIN, 0};
    REQUIRE(poll(&p, 1, kWaitMs) == 1); /* the EOF is there; the pool was not told */
    Sink c;
    f.submit(c, "rows 1 c");
    CHECK_EQ(f.observer.disconnected_n, 2);
    CHECK_EQ(f.pool.counts().connecting, 1);
    REQUIRE(f.drive([&] { return c.ended(); }));
    CHECK(c.done);
    CHECK_EQ(f.server.accepted(), 3);
    CHECK_EQ(f.pool.counts().open, 1);
    f.check_watcher_balanced();
}

/* One connection busy with a held statement (a), one idle (b's). */
static bool busy_and_idle(Fixture &f, Sink &a, Sink &b)
{
    f.submit(a, "hold");
    f.submit(b, "rows 1 b");
    return f.drive([&] { return f.server.held() == 1 && b.ended(); }) && f.pool.counts().idle == 1;
}

TEST(retire_closes_idle_now_and_busy_after_its_statement)
{
    Fixture f;
    Sink a, b;
    REQUIRE(busy_and_idle(f, a, b));
    CHECK_EQ(f.pool.counts().active, 1);

    f.pool.retire_key(f.spec("").key);
    CHECK_EQ(f.pool.counts().open, 1); /* the idle one, at once */
    CHECK_EQ(f.pool.counts().active, 1);
    CHECK_EQ(f.observer.disconnected_n, 1);
    REQUIRE(f.drive([&] { return f.server.open_clients() == 1; }));

    f.server.release();
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK(a.done); /* its statement was not disturbed */
    CHECK_EQ(f.pool.counts().open, 0);
    CHECK_EQ(f.observer.disconnected_n, 2);

    Sink c;
    f.submit(c, "rows 1 c");
    REQUIRE(f.drive([&] { return c.ended(); }));
    CHECK(c.done);
    CHECK_EQ(f.server.accepted(), 3);
    f.check_watcher_balanced();
}

TEST(close_idle_closes_idle_connections_and_leaves_busy_ones)
{
    Fixture f;
    Sink a, b;
    REQUIRE(busy_and_idle(f, a, b));

    f.pool.close_idle();
    CHECK_EQ(f.pool.counts().open, 1); /* the idle one, at once */
    CHECK_EQ(f.pool.counts().active, 1);
    REQUIRE(f.drive([&] { return f.server.open_clients() == 1; }));

    /* the busy one is not retired: it goes back to the pool and is reused */
    f.server.release();
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK(a.done);
    CHECK_EQ(f.pool.counts().idle, 1);
    Sink c;
    f.submit(c, "rows 1 c");
    REQUIRE(f.drive([&] { return c.ended(); }));
    CHECK(c.done);
    CHECK_EQ(f.server.accepted(), 2);
    f.check_watcher_balanced();
}

TEST(replaced_socket_is_reported_to_the_watcher)
{
    Fixture f;
    /* the first server libpq reaches says it is read-only: with
     * target_session_attrs=read-write libpq drops it and connects again,
     * on a new socket, inside the same connection */
    f.server.read_only_first(1);
    JobSpec s = f.spec("rows 1 x");
    s.connstr = "host=127.0.0.1,127.0.0.1 port=" + std::to_string(f.server.port()) +
                " dbname=stub user=stub target_session_attrs=read-write";
    s.key = s.connstr;
    Sink a;
    f.submit(a, s);
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK(a.done);
    CHECK_EQ(f.server.accepted(), 2);
    CHECK_EQ(f.pool.connects(), 1);
    REQUIRE(f.watcher.log.size() == 1);
    const std::vector<std::string> &log = f.watcher.log.begin()->second;
    /* watched, forgotten while still connecting, watched again */
    size_t forgot = 0;
    while (forgot < log.size() && log[forgot] != "f")
        forgot++;
    CHECK(forgot > 0);
    CHECK(forgot + 1 < log.size());
    CHECK_EQ(f.watcher.starts, 2);
    CHECK_EQ(f.watcher.forgets, 1);
    /* what it watches now is the socket the connection has */
    int sock = -1;
    f.pool.for_each_socket([&](int so, int, PoolSocket *, uint64_t) { sock = so; });
    REQUIRE(f.watcher.current.size() == 1);
    CHECK_EQ(f.watcher.current.begin()->second.sock, sock);
    CHECK_EQ(f.watcher.bad, 0);
    f.check_watcher_balanced();
}

TEST(watcher_set_later_is_told_the_sockets_there_are)
{
    Fixture f;
    f.pool.set_watcher(nullptr);
    CHECK_EQ(f.watcher.starts, 0);
    Sink a;
    f.submit(a, "rows 1 a");
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK_EQ(f.watcher.starts, 0);
    f.pool.set_watcher(&f.watcher);
    CHECK_EQ(f.watcher.starts, 1);
    REQUIRE(f.watcher.current.size() == 1);
    CHECK_EQ(f.watcher.current.begin()->second.events, 1); /* idle: readable */
    f.check_watcher_balanced();
}

TEST(abandoned_job_is_cancelled_and_its_connection_reused)
{
    Fixture f;
    Sink a;
    f.submit(a, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    f.pool.abandon(a.handle);
    CHECK_EQ(f.pool.counts().cancelling, 1);
    CHECK_EQ(f.pool.counts().active, 0);
    /* the cancel request reached the server, which ended the statement;
     * the connection is drained and pooled again */
    REQUIRE(f.drive([&] { return f.pool.counts().idle == 1; }));
    CHECK_EQ(f.server.cancels(), 1);
    CHECK_EQ(a.endings, 0);
    CHECK(a.rows.empty());
    CHECK_EQ(f.server.held(), 0);

    Sink b;
    f.submit(b, "rows 1 b");
    REQUIRE(f.drive([&] { return b.ended(); }));
    CHECK(b.done);
    CHECK_EQ(b.rows.size(), 1);
    CHECK_EQ(f.server.accepted(), 1);
    CHECK_EQ(a.endings, 0);
    f.check_watcher_balanced();
}

TEST(query_timeout_fails_the_job_and_closes_the_connection)
{
    Fixture f;
    Sink a;
    JobSpec s = f.spec("hold");
    s.query_timeout_ms = 200;
    f.submit(a, s);
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK(a.failed);
    CHECK_EQ(a.sqlstate, "57014");
    CHECK(a.message.find("query_timeout") != std::string::npos);
    CHECK_EQ(f.pool.counts().open, 0);
    CHECK_EQ(f.observer.disconnected_n, 1);
    REQUIRE(f.drive([&] { return f.server.cancels() == 1; }));
    f.check_watcher_balanced();
}

TEST(remote_error_reaches_the_sink_and_the_connection_is_reused)
{
    for (bool prepare : {true, false}) {
        Fixture f;
        Sink a;
        f.submit(a, "error 22012 division by zero", prepare);
        REQUIRE(f.drive([&] { return a.ended(); }));
        CHECK(a.failed);
        CHECK(!a.done);
        CHECK_EQ(a.sqlstate, "22012");
        CHECK(a.message.find("division by zero") != std::string::npos);
        CHECK_EQ(a.endings, 1);
        CHECK_EQ(f.pool.counts().idle, 1);

        Sink b;
        f.submit(b, "rows 2 z", prepare);
        REQUIRE(f.drive([&] { return b.ended(); }));
        CHECK(b.done);
        CHECK_EQ(b.rows.size(), 2);
        CHECK_EQ(f.server.accepted(), 1);
        f.check_watcher_balanced();
    }
}

TEST(connection_refused_fails_the_job_with_08001)
{
    Fixture f;
    int port;
    {
        stub::PgStub gone; /* a port nobody listens on any more */
        port = gone.port();
    }
    JobSpec s = f.spec("rows 1 x");
    s.connstr = "host=127.0.0.1 port=" + std::to_string(port) + " dbname=stub user=stub";
    s.key = s.connstr;
    Sink a;
    f.submit(a, s);
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK(a.failed);
    CHECK_EQ(a.sqlstate, "08001");
    CHECK(!a.detail.empty());
    CHECK_EQ(f.pool.counts().open, 0);
    CHECK_EQ(f.observer.connected_n, 0);
    f.check_watcher_balanced();
}

/* A cancel request is a socket of the pool's own: one to a frozen remote
 * (the kernel accepts, nobody answers) holds nothing but itself. */
TEST(cancel_to_a_frozen_remote_holds_nothing_but_itself)
{
    Fixture f;
    PoolLimits l;
    l.max_per_key = 8;
    l.cancel_wait_ms = 60000; /* none is given up during the test */
    f.pool.set_limits(l);
    stub::PgStub cold;
    JobSpec s = f.spec("hold");
    s.connstr = cold.conninfo();
    s.key = s.connstr;
    Sink a[6], b;
    for (Sink &x : a)
        f.submit(x, s);
    f.submit(b, "hold");
    REQUIRE(f.drive([&] { return cold.held() == 6 && f.server.held() == 1; }));
    cold.freeze();
    for (Sink &x : a)
        f.pool.abandon(x.handle);
    f.pool.abandon(b.handle);
    KeyCounts k;
    CHECK(f.pool.key_counts(s.key, k));
    CHECK_EQ(k.cancelling, 6);
    CHECK_EQ(f.key().cancelling, 1);
    /* the healthy remote's cancel went through while the others wait
     * (more of them than there ever were helper threads) */
    REQUIRE(f.drive([&] { return f.key().idle == 1; }));
    CHECK_EQ(f.server.cancels(), 1);
    CHECK(f.pool.key_counts(s.key, k));
    CHECK_EQ(k.cancelling, 6);
    CHECK_EQ(cold.cancels(), 0);
    for (Sink &x : a)
        CHECK_EQ(x.endings, 0);
    CHECK_EQ(b.endings, 0);
    f.check_watcher_balanced(); /* closing everything drops the requests still waiting */
    cold.thaw();
}

/* A cancel request the remote never confirms (it may still arrive, and hit
 * the next statement) is given up at its deadline, and the connection it
 * was for is closed, never reused, even though its statement ended. */
TEST(unconfirmed_cancel_closes_its_connection)
{
    Fixture f;
    PoolLimits l;
    l.max_per_key = 4;
    l.cancel_wait_ms = 500;
    f.pool.set_limits(l);
    f.server.keep_cancel_connections();
    Sink a;
    f.submit(a, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    f.pool.abandon(a.handle);
    /* the statement ended (the stub carried the cancel out) ... */
    REQUIRE(f.drive([&] { return f.server.held() == 0; }));
    /* ... but the connection is closed, not pooled again */
    REQUIRE(f.drive([&] { return f.key().open == 0; }));
    CHECK_EQ(f.key().idle, 0);
    Sink b;
    f.submit(b, "rows 1 b");
    REQUIRE(f.drive([&] { return b.ended(); }));
    CHECK(b.done);
    CHECK_EQ(f.server.accepted(), 2);
    CHECK_EQ(a.endings, 0);
    f.check_watcher_balanced();
}

/* A connection opened for a job while the limit was higher does not run it
 * over a lowered limit: the job goes back to the queue. */
TEST(lowered_limit_holds_for_connections_still_opening)
{
    Fixture f(4);
    Sink h[2];
    for (Sink &x : h)
        f.submit(x, "hold");
    /* two connections opening, none connected yet */
    CHECK_EQ(f.key().connecting, 2);
    PoolLimits l;
    l.max_per_key = 1;
    l.cancel_wait_ms = 3000;
    f.pool.set_limits(l);
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    CHECK(!f.drive([&] { return f.server.held() > 1; }, 100));
    CHECK_EQ(f.key().waiting, 1);
    CHECK(f.key().open <= 1);
    REQUIRE(f.drive([&] {
        f.server.release();
        return h[0].ended() && h[1].ended();
    }));
    CHECK(h[0].done && h[1].done);
    f.check_watcher_balanced();
}

/* A raised limit serves the jobs already waiting, without another event. */
TEST(raised_limit_serves_the_waiting_jobs_at_once)
{
    Fixture f(1);
    Sink a, b;
    f.submit(a, "hold");
    f.submit(b, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    CHECK_EQ(f.key().waiting, 1);
    PoolLimits l;
    l.max_per_key = 2;
    l.cancel_wait_ms = 3000;
    f.pool.set_limits(l);
    CHECK_EQ(f.key().waiting, 0);
    REQUIRE(f.drive([&] { return f.server.held() == 2; }));
    f.server.release();
    REQUIRE(f.drive([&] { return a.ended() && b.ended(); }));
    f.check_watcher_balanced();
}

/* Closing everything (a worker's exit) waits for cancel requests only until
 * the bound it is given, whatever the remote does. */
TEST(close_all_with_a_frozen_remote_ends_by_its_bound)
{
    Fixture f;
    Sink a;
    f.submit(a, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    f.server.freeze();
    Clock::time_point t0 = Clock::now();
    f.pool.close_all(t0 + std::chrono::milliseconds(200));
    /* the bound is 200 ms; the margin is for a loaded machine */
    CHECK(Clock::now() - t0 < std::chrono::seconds(3));
    CHECK_EQ(f.pool.counts().open, 0);
    CHECK_EQ(a.endings, 0);
    f.check_watcher_balanced();
    f.server.thaw();
}

/* A lowered limit holds at once: surplus idle connections close now, and
 * no more statements run than the new limit, on the connections there are. */
TEST(lowered_limit_holds_at_once)
{
    Fixture f(4);
    Sink h[4];
    for (Sink &x : h)
        f.submit(x, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 4; }));
    f.server.release();
    REQUIRE(f.drive([&] { return f.key().idle == 4; }));

    PoolLimits l;
    l.max_per_key = 2;
    l.cancel_wait_ms = 3000;
    f.pool.set_limits(l);
    CHECK_EQ(f.key().open, 2);
    Sink n[4];
    for (Sink &x : n)
        f.submit(x, "hold");
    REQUIRE(f.drive([&] { return f.server.held() == 2; }));
    CHECK(!f.drive([&] { return f.server.held() > 2; }, 100));
    CHECK_EQ(f.key().waiting, 2);
    REQUIRE(f.drive([&] {
        f.server.release();
        return n[0].ended() && n[1].ended() && n[2].ended() && n[3].ended();
    }));
    for (Sink &x : n)
        CHECK(x.done);
    CHECK_EQ(f.server.accepted(), 4); /* none opened anew */
    CHECK(f.key().open <= 2);
    f.check_watcher_balanced();
}

/* The same for a cluster's own limit (JobSpec::max_connections), which comes
 * with the jobs: the latest job's limit is the key's. */
TEST(lowered_cluster_limit_holds_at_once)
{
    Fixture f(8);
    Sink h[4];
    for (Sink &x : h) {
        JobSpec s = f.spec("hold");
        s.max_connections = 4;
        f.submit(x, s);
    }
    REQUIRE(f.drive([&] { return f.server.held() == 4; }));
    f.server.release();
    REQUIRE(f.drive([&] { return f.key().idle == 4; }));

    Sink n[3];
    for (Sink &x : n) {
        JobSpec s = f.spec("hold");
        s.max_connections = 1;
        f.submit(x, s);
    }
    REQUIRE(f.drive([&] { return f.server.held() == 1; }));
    CHECK(!f.drive([&] { return f.server.held() > 1; }, 100));
    CHECK_EQ(f.key().open, 1);
    CHECK_EQ(f.key().waiting, 2);
    REQUIRE(f.drive([&] {
        f.server.release();
        return n[0].ended() && n[1].ended() && n[2].ended();
    }));
    CHECK_EQ(f.server.accepted(), 4);
    f.check_watcher_balanced();
}

/* A service file is read by libpq as it starts a connection, and its host
 * names resolved there: such a connection is started off the worker's
 * thread (the lookup lane), so right after submit it has no socket yet. */
TEST(connection_through_a_service_file_starts_off_the_callers_thread)
{
    Fixture f;
    char path[] = "/tmp/bgw_service_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    std::string text = "[stubsvc]\nhost=127.0.0.1\nport=" + std::to_string(f.server.port()) + "\ndbname=stub\nuser=stub\n";
    REQUIRE(write(fd, text.data(), text.size()) == ssize_t(text.size()));
    close(fd);
    setenv("PGSERVICEFILE", path, 1);
    JobSpec s = f.spec("rows 2 svc");
    s.connstr = "service=stubsvc";
    s.key = s.connstr;
    Sink a;
    f.submit(a, s);
    int sockets = 0;
    f.pool.for_each_socket([&](int, int, PoolSocket *, uint64_t) { sockets++; });
    CHECK_EQ(sockets, 0);
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK(a.done);
    CHECK_EQ(a.rows.size(), 2);
    CHECK_EQ(f.server.accepted(), 1);

    /* a service the file does not have: libpq's own error, as 08001 */
    JobSpec bad = f.spec("rows 1 x");
    bad.connstr = "service=nosuch";
    bad.key = bad.connstr;
    Sink b;
    f.submit(b, bad);
    REQUIRE(f.drive([&] { return b.ended(); }));
    CHECK(b.failed);
    CHECK_EQ(b.sqlstate, "08001");
    CHECK(b.detail.find("nosuch") != std::string::npos);
    unsetenv("PGSERVICEFILE");
    unlink(path);
    f.check_watcher_balanced();
}

/* A lowered connection_lifetime holds at once: a connection older than the
 * lifetime the next job brings is not used for it, but replaced. */
TEST(lowered_lifetime_holds_at_once)
{
    Fixture f;
    JobSpec s = f.spec("rows 1 a");
    s.lifetime_s = 3600;
    Sink a;
    f.submit(a, s);
    REQUIRE(f.drive([&] { return a.ended() && f.key().idle == 1; }));
    /* 1.5 s pass, the connection idle in the pool (its lifetime is an
     * hour): it is older than 1 s and that lifetime's 10% jitter */
    CHECK(!f.drive([&] { return f.key().idle != 1; }, 1500));
    JobSpec t = f.spec("rows 1 b");
    t.lifetime_s = 1;
    Sink b;
    f.submit(b, t);
    REQUIRE(f.drive([&] { return b.ended(); }));
    CHECK(b.done);
    CHECK_EQ(f.server.accepted(), 2);
    CHECK_EQ(f.key().open, 1);
    f.check_watcher_balanced();
}

namespace {

/* Plays the lend table and the backends that borrow from it. */
struct FakeLender : ConnectionLender {
    enum State { Free, Parked, Lent, Broken };
    std::map<int, State> entries;
    std::map<int, int> wanted;       /* take_back answered InUse */
    int next = 0, lends = 0, releases = 0;

    int lend(int slot, const std::string &, PGconn *, uint64_t ino, int64_t) override
    {
        if (ino == 0)
            return -1;
        if (slot < 0)
            slot = next++;
        entries[slot] = Parked;
        lends++;
        return slot;
    }
    Back take_back(int slot, DrainFrom *) override
    {
        State &s = entries[slot];
        if (s == Lent) {
            wanted[slot]++;
            return Back::InUse;
        }
        Back b = s == Broken ? Back::Broken : Back::Yes;
        s = Free;
        return b;
    }
    void release(int slot) override
    {
        entries.erase(slot);
        releases++;
    }
    bool broken(int slot) override { return entries[slot] == Broken; }
    Clock::time_point last_returned(int) override { return Clock::time_point::min(); }

    /* a backend borrows the one parked entry */
    int borrow()
    {
        for (auto &[slot, s] : entries)
            if (s == Parked) {
                s = Lent;
                return slot;
            }
        return -1;
    }
};

} // namespace

TEST(idle_connection_is_lent_and_taken_back_for_a_job)
{
    Fixture f(1);
    FakeLender lender;
    f.pool.set_lender(&lender);
    Sink a;
    f.submit(a, "rows 1 a");
    REQUIRE(f.drive([&] { return a.ended(); }));
    CHECK(a.done);
    CHECK_EQ(lender.lends, 1);
    CHECK_EQ(f.pool.counts().idle, 1); /* a parked connection counts as idle */
    /* parked: its socket is not watched (a backend may be using it) */
    REQUIRE(f.watcher.current.size() == 1);
    CHECK_EQ(f.watcher.current.begin()->second.events, 0);

    /* a job while a backend has it: it waits, the connection is wanted */
    int slot = lender.borrow();
    REQUIRE(slot == 0);
    Sink b;
    f.submit(b, "rows 1 b");
    CHECK_EQ(f.key().waiting, 1);
    CHECK_EQ(lender.wanted[slot], 1);
    CHECK(!f.drive([&] { return b.ended(); }, 200)); /* no new connection: the limit is 1 */
    CHECK_EQ(f.server.accepted(), 1);

    /* given back: the job runs on it, then it is parked again in its entry */
    lender.entries[slot] = FakeLender::Parked;
    f.pool.on_returns();
    REQUIRE(f.drive([&] { return b.ended(); }));
    CHECK(b.done);
    CHECK_EQ(f.server.accepted(), 1);
    CHECK_EQ(lender.entries[slot], FakeLender::Parked);
    CHECK_EQ(lender.next, 1); /* the same entry: backends keep their copies */
    f.check_watcher_balanced();
    CHECK_EQ(lender.releases, 1);
}

TEST(connection_given_back_broken_is_closed)
{
    Fixture f(1);
    FakeLender lender;
    f.pool.set_lender(&lender);
    Sink a;
    f.submit(a, "rows 1 a");
    REQUIRE(f.drive([&] { return a.ended(); }));
    int slot = lender.borrow();
    REQUIRE(slot >= 0);
    lender.entries[slot] = FakeLender::Broken; /* say, cancelled mid-statement */
    f.pool.on_returns();
    REQUIRE(f.drive([&] { return f.pool.counts().open == 0; }));
    CHECK_EQ(lender.releases, 1);
    CHECK_EQ(f.observer.disconnected_n, 1);
    /* the next job gets a new connection */
    Sink b;
    f.submit(b, "rows 1 b");
    REQUIRE(f.drive([&] { return b.ended(); }));
    CHECK(b.done);
    CHECK_EQ(f.server.accepted(), 2);
    f.check_watcher_balanced();
}

TEST(retired_connection_in_use_elsewhere_closes_when_given_back)
{
    Fixture f(2);
    FakeLender lender;
    f.pool.set_lender(&lender);
    Sink a;
    f.submit(a, "rows 1 a");
    REQUIRE(f.drive([&] { return a.ended(); }));
    int slot = lender.borrow();
    REQUIRE(slot >= 0);
    f.pool.retire_key(f.spec("").key);
    CHECK_EQ(f.pool.counts().open, 1); /* still in a backend's hands */
    CHECK(f.pool.next_deadline() == Clock::time_point::max()); /* nothing to poll for meanwhile */
    lender.entries[slot] = FakeLender::Parked;
    f.pool.on_returns();
    REQUIRE(f.drive([&] { return f.pool.counts().open == 0; }));
    CHECK_EQ(lender.releases, 1);
    f.check_watcher_balanced();
}
