/*
 * pool.cpp — the pool: who owns which connection and job, the per-state
 * lists and counts, dispatch of jobs to connections, the socket watcher.
 * See conn_pool.hpp for the state machine, connection.cpp for libpq.
 */
#include "pool/connection.hpp"
#include "pool/cancel_sender.hpp"

#include <algorithm>

#include <sys/stat.h>

namespace bgw {

namespace {

Clock::time_point after_ms(int ms)
{
    return ms > 0 ? Clock::now() + std::chrono::milliseconds(ms) : Clock::time_point::max();
}

/* Prepared statements are kept per query text and declared result types
 * (two functions may run the same query and declare different types). */
std::string statement_key(const JobSpec &s)
{
    std::string key = s.query;
    for (const ResultColumn &c : s.result_types)
        key += '\x1e' + c.name + '\x1f' + std::to_string(c.type);
    return key;
}

/* A socket's identity beyond its number: its inode (sockfs numbers each
 * socket). 0 if it cannot be had. */
uint64_t socket_identity(int sock)
{
    struct stat st;
    return fstat(sock, &st) == 0 ? uint64_t(st.st_ino) : 0;
}

/* The transitions of the state machine (conn_pool.hpp); Closing is reached
 * from every other state, through Pool::close only. */
bool allowed(ConnState from, ConnState to)
{
    switch (from) {
    case ConnState::Resolving: return to == ConnState::Connecting || to == ConnState::Closing;
    case ConnState::Connecting: return to == ConnState::Idle || to == ConnState::Closing;
    case ConnState::Idle: return to == ConnState::Busy || to == ConnState::Lent || to == ConnState::Closing;
    case ConnState::Lent: return to == ConnState::Idle || to == ConnState::Cancelling || to == ConnState::Closing;
    case ConnState::Busy:
        return to == ConnState::Idle || to == ConnState::Cancelling || to == ConnState::Closing;
    case ConnState::Cancelling: return to == ConnState::Idle || to == ConnState::Closing;
    case ConnState::Closing: return false;
    }
    return false;
}

const char *const kConnectFailed = "could not connect to the remote server";

/* Every connection not closing, without building a list: for the calls
 * made on every turn of the event loop. fn must not close or destroy. */
template <typename Keys, typename F>
void each_live(const Keys &keys, F fn)
{
    for (const auto &[key, kp] : keys)
        for (int s = 0; s < kConnStates; s++)
            if (ConnState(s) != ConnState::Closing)
                for (const std::unique_ptr<Connection> &c : kp->conns[s])
                    fn(c.get());
}

} // namespace

/* ------------------------------------------------------------ KeyPool */

size_t KeyPool::size() const
{
    size_t n = 0;
    for (const ConnList &l : conns)
        n += l.size();
    return n;
}

KeyCounts KeyPool::counts() const
{
    KeyCounts n;
    n.connecting = uint32_t(list(ConnState::Resolving).size() + list(ConnState::Connecting).size());
    n.idle = uint32_t(list(ConnState::Idle).size() + list(ConnState::Lent).size());
    n.active = uint32_t(list(ConnState::Busy).size());
    n.cancelling = uint32_t(list(ConnState::Cancelling).size());
    n.open = n.connecting + n.idle + n.active + n.cancelling;
    n.waiting = uint32_t(waiting.size());
    if (!waiting.empty())
        n.oldest_wait = waiting.front()->queued_at;
    return n;
}

/* ------------------------------------------------- state and closing */

/* A new connection takes its place on the list of its first state. */
Connection &Pool::adopt(KeyPool &kp, std::unique_ptr<Connection> owned, ConnState first)
{
    Connection &c = *owned;
    ConnList &l = kp.list(first);
    l.push_back(std::move(owned));
    Membership &m = c.membership(Access());
    m.state = first;
    m.kp = &kp;
    m.node = std::prev(l.end());
    totals_[int(first)]++;
    return c;
}

bool Pool::set_state(Connection &c, ConnState to)
{
    Membership &m = c.membership(Access());
    if (!allowed(m.state, to) || (to == ConnState::Closing && !m.close_reason)) {
        /* a bug: a connection in a state we cannot trust is not reused */
        if (m.state != ConnState::Closing)
            close(c, "internal error: impossible connection state change");
        return false;
    }
    KeyPool &kp = *m.kp;
    ConnList &from = kp.list(m.state);
    kp.list(to).splice(kp.list(to).end(), from, m.node); /* m.node stays valid */
    totals_[int(m.state)]--;
    totals_[int(to)]++;
    m.state = to;
    update_interest(c);
    return true;
}

void Pool::close(Connection &c, const char *reason) noexcept
{
    Membership &m = c.membership(Access());
    if (m.state == ConnState::Closing)
        return; /* the first reason stands */
    m.close_reason = reason ? reason : "closed";
    if (m.state == ConnState::Lent)
        c.disown_socket(); /* not taken back: another process may be using it */
    if (m.lent_slot >= 0 && lender_)
        lender_->release(m.lent_slot);
    m.lent_slot = -1;
    set_state(c, ConnState::Closing); /* forgets its socket */
    /* a job waiting for it to connect is served by another one */
    if (std::unique_ptr<Job> pending = c.take_pending()) {
        try {
            m.kp->waiting.push_front(std::move(pending));
        } catch (...) {
            /* no room to queue it again: it ends here, and its sink hears so */
            static const std::string none;
            pending->sink->on_error(nullptr, "53200", none, none);
        }
    }
    c.drop_job(m.close_reason);
    if (c.opened() && observer_)
        observer_->disconnected(c.stat_ref(), m.close_reason);
}

/* The one place that compares a connection's socket and events with what
 * the watcher was told, and tells it what changed. */
void Pool::update_interest(Connection &c)
{
    Membership &m = c.membership(Access());
    int sock = -1, events = 0;
    uint64_t ino = 0;
    if (m.state != ConnState::Closing) {
        sock = c.socket();
        if (sock >= 0) {
            events = c.events();
            /* libpq closes the socket of a failed attempt and opens the
             * next under the same number, at any PQconnectPoll: while
             * connecting, and once when it ends, the inode says whether it
             * is the same socket. Later the socket cannot change, so the
             * calls that follow cost no fstat. */
            bool connecting = m.state == ConnState::Connecting || m.state == ConnState::Resolving;
            bool may_change = connecting || !m.sock_settled || sock != m.sock || m.sock_ino == 0;
            ino = may_change ? socket_identity(sock) : m.sock_ino;
            m.sock_settled = !connecting;
        }
    }
    bool same_socket = sock == m.sock && ino == m.sock_ino;
    if (same_socket && events == m.events)
        return;
    bool was_watched = m.sock >= 0;
    m.sock = sock;
    m.events = events;
    m.sock_ino = ino;
    if (!watcher_)
        return;
    if (!same_socket && was_watched)
        watcher_->forget(&c, c.id());
    if (sock >= 0)
        watcher_->watch(&c, c.id(), sock, events);
}

void Pool::set_watcher(SocketWatcher *w)
{
    cancels_->set_watcher(w);
    std::vector<Connection *> live = live_connections();
    if (watcher_)
        for (Connection *c : live)
            if (c->membership().sock >= 0)
                watcher_->forget(c, c->id());
    watcher_ = w;
    if (watcher_)
        for (Connection *c : live) {
            const Membership &m = c->membership();
            if (m.sock >= 0)
                watcher_->watch(c, c->id(), m.sock, m.events);
        }
}

void Pool::opened(Connection &c)
{
    connects_++;
    if (observer_)
        observer_->connected(c.stat_ref());
}

void Pool::became_idle(Connection &c)
{
    KeyPool &kp = *c.membership().kp;
    if (c.has_pending()) {
        if (int(kp.live()) > limit_of(kp)) {
            /* opened before the limit was lowered: its job goes back to
             * the head of the queue (close) */
            close(c, "pool limit lowered");
            return;
        }
        c.run(c.take_pending());
        return;
    }
    dispatch(kp);
    trim(kp);
    if (c.state() == ConnState::Idle)
        park(c);
}

void Pool::park(Connection &c)
{
    if (!lender_ || !c.serves_new_jobs(Clock::now()) || !c.pg())
        return;
    Membership &m = c.membership(Access());
    int slot = lender_->lend(m.lent_slot, c.key(), c.pg(), m.sock_ino, c.stat_ref());
    if (slot < 0)
        return;
    m.lent_slot = slot;
    m.wanted = false;
    set_state(c, ConnState::Lent);
}

bool Pool::take_back(Connection &c)
{
    Membership &m = c.membership(Access());
    ConnectionLender::DrainFrom from;
    switch (lender_->take_back(m.lent_slot, &from)) {
    case ConnectionLender::Back::Yes:
        m.wanted = false;
        return set_state(c, ConnState::Idle);
    case ConnectionLender::Back::Drain:
        /* counted against the limit until the remote has ended it */
        m.wanted = false;
        c.drain(from);
        return false;
    case ConnectionLender::Back::Broken:
        /* its statement may still run: cancelled, never reused */
        (void) send_cancel(c.pg());
        close(c, "given back in an unknown state by a backend");
        return false;
    case ConnectionLender::Back::InUse:
        break;
    }
    m.wanted = true;
    return false;
}

void Pool::settle_lent(Connection &c, Clock::time_point now)
{
    Clock::time_point returned = lender_->last_returned(c.membership().lent_slot);
    if (returned != Clock::time_point::min())
        c.note_used(returned);
    int idle_timeout_s = limits_.idle_timeout_s;
    bool idled_out = idle_timeout_s > 0 && now - c.last_used() >= std::chrono::seconds(idle_timeout_s);
    bool retiring = !c.serves_new_jobs(now);
    if (!idled_out && !retiring && !c.membership().wanted && !lender_->broken(c.membership().lent_slot))
        return;
    if (!take_back(c)) {
        if (c.state() == ConnState::Lent)
            c.note_used(now); /* in use: not idle */
        return;
    }
    KeyPool &kp = *c.membership().kp;
    if (retiring) {
        close(c, c.retire_reason());
        return;
    }
    if (idled_out) {
        close(c, "idle_timeout");
        return;
    }
    dispatch(kp);
    trim(kp);
    if (c.state() == ConnState::Idle)
        park(c); /* nothing waits for it (any more) */
}

void Pool::on_returns()
{
    if (!lender_)
        return;
    /* the wanted ones, and those given back broken */
    std::vector<Connection *> lent;
    for (const auto &[key, kp] : keys_)
        for (const std::unique_ptr<Connection> &c : kp->list(ConnState::Lent))
            lent.push_back(c.get());
    Clock::time_point now = Clock::now();
    for (Connection *c : lent)
        if (c->state() == ConnState::Lent)
            settle_lent(*c, now);
    reap();
}

void Pool::connect_failed(std::unique_ptr<Job> job, const std::string &why)
{
    job->sink->on_error(nullptr, "08001", kConnectFailed, why);
}

/* ------------------------------------------------------------ the pool */

Pool::Pool() : cancels_(std::make_unique<CancelSender>()) {}

Pool::~Pool() { close_all(); }

CancelTicket Pool::send_cancel(PGconn *conn) noexcept
{
    return cancels_->send(conn, ++connection_ids_, after_ms(limits_.cancel_wait_ms));
}

void Pool::set_limits(const PoolLimits &l)
{
    limits_ = l;
    for (auto &[key, kp] : keys_) {
        trim(*kp);
        dispatch(*kp); /* a raised limit serves the calls waiting now */
    }
    reap();
}

int Pool::limit_of(const KeyPool &kp) const
{
    return kp.max_connections > 0 ? kp.max_connections : limits_.max_per_key;
}

void Pool::trim(KeyPool &kp)
{
    ConnList &idle = kp.list(ConnState::Idle);
    while (!idle.empty() && int(kp.live()) > limit_of(kp))
        close(*idle.front(), "pool limit lowered"); /* the longest idle first */
    if (!lender_ || int(kp.live()) <= limit_of(kp))
        return;
    /* parked ones too: each taken back (those in use: once given back) */
    std::vector<Connection *> lent;
    for (const std::unique_ptr<Connection> &c : kp.list(ConnState::Lent))
        lent.push_back(c.get());
    for (Connection *c : lent)
        if (int(kp.live()) > limit_of(kp) && take_back(*c))
            close(*c, "pool limit lowered");
}

KeyPool &Pool::key_pool(const std::string &key)
{
    std::unique_ptr<KeyPool> &kp = keys_[key];
    if (!kp)
        kp = std::make_unique<KeyPool>(key);
    return *kp;
}

std::vector<Connection *> Pool::live_connections() const
{
    std::vector<Connection *> out;
    each_live(keys_, [&](Connection *c) { out.push_back(c); });
    return out;
}

void Pool::submit(JobSpec spec, QuerySink *sink, Job **handle)
{
    auto job = std::make_unique<Job>();
    job->spec = std::move(spec);
    job->sink = sink;
    job->spec.statement_key = statement_key(job->spec);
    job->queued_at = Clock::now();
    job->wait_until = after_ms(job->spec.pool_wait_timeout_ms);
    KeyPool &kp = key_pool(job->spec.key);
    kp.max_connections = job->spec.max_connections; /* the latest configuration's */
    kp.waiting.push_back(std::move(job));
    /* the caller holds the job once the pool owns it, before anything can
     * finish it (the sink clears *handle when the job ends); from here on
     * an exception leaves the job owned by the pool (queued, or pending on
     * a connection), so the handle stays good for abandon() */
    *handle = kp.waiting.back().get();
    dispatch(kp);
    reap();
}

/* Give waiting jobs idle connections, open new ones within the limit. A
 * lowered limit holds at once: an idle connection over it is closed, not
 * used, so no more statements run than the limit says. */
void Pool::dispatch(KeyPool &kp)
{
    int limit = limit_of(kp);
    while (!kp.waiting.empty()) {
        ConnList &idle = kp.list(ConnState::Idle);
        if (idle.empty() && lender_ && !kp.list(ConnState::Lent).empty()) {
            /* the most recently parked first; each one in use elsewhere
             * is marked wanted, so its return wakes us */
            std::vector<Connection *> lent;
            for (const std::unique_ptr<Connection> &c : kp.list(ConnState::Lent))
                lent.push_back(c.get());
            for (auto it = lent.rbegin(); it != lent.rend() && idle.empty(); ++it)
                (void) take_back(**it);
        }
        if (!idle.empty()) {
            if (int(kp.live()) > limit) {
                close(*idle.front(), "pool limit lowered");
                continue;
            }
            /* the most recently idle one: the others may then idle out */
            Connection &c = *idle.back();
            c.set_lifetime(kp.waiting.front()->spec.lifetime_s);
            if (!c.serves_new_jobs(Clock::now())) {
                close(c, c.retire_reason());
                continue;
            }
            if (!c.fit_for_reuse()) {
                close(c, "idle connection closed by remote");
                continue;
            }
            std::unique_ptr<Job> job = std::move(kp.waiting.front());
            kp.waiting.pop_front();
            try {
                c.run(std::move(job));
            } catch (...) {
                /* out of memory sending it: that job fails with its
                 * connection (close tells its sink), the queue goes on */
                close(c, "out of memory in the worker");
            }
            continue;
        }
        /* connections being opened for earlier jobs will serve them */
        for (ConnState s : {ConnState::Resolving, ConnState::Connecting})
            for (const std::unique_ptr<Connection> &c : kp.list(s))
                if (!c->has_pending() && !c->retired())
                    return;
        if (int(kp.size()) >= limit)
            return; /* wait for a connection of this key to become idle */
        try {
            open_connection(kp);
        } catch (...) {
            /* out of memory: the job stays at the head of the queue, for
             * the next connection that comes idle or its wait timeout */
            return;
        }
    }
}

/* For the job at the head of the queue: it leaves the queue only once
 * nothing can throw, so a failure (out of memory) never loses it. */
void Pool::open_connection(KeyPool &kp)
{
    ConnectionHost &host = *this; /* a private base: converted here, where it is accessible */
    auto owned = std::make_unique<Connection>(host, ++connection_ids_, kp.key);
    owned->configure(kp.waiting.front()->spec);
    ConnState first = owned->resolving() ? ConnState::Resolving : ConnState::Connecting;
    std::string err;
    err.reserve(256);
    Connection &c = adopt(kp, std::move(owned), first);
    c.set_pending(std::move(kp.waiting.front()));
    kp.waiting.pop_front();
    if (first == ConnState::Connecting && !c.start(err)) {
        std::unique_ptr<Job> job = c.take_pending();
        close(c, "connection failed");
        connect_failed(std::move(job), err);
    }
}

void Pool::abandon(Job *job)
{
    if (job->conn) {
        job->conn->abandon(); /* destroys the job */
    } else if (auto it = keys_.find(job->spec.key); it != keys_.end()) {
        KeyPool &kp = *it->second;
        for (ConnState s : {ConnState::Resolving, ConnState::Connecting})
            for (const std::unique_ptr<Connection> &c : kp.list(s))
                if (c->pending_is(job))
                    c->abandon(); /* drops it; keeps connecting, for the next job */
        auto w = std::find_if(kp.waiting.begin(), kp.waiting.end(),
                              [job](const std::unique_ptr<Job> &j) { return j.get() == job; });
        if (w != kp.waiting.end())
            kp.waiting.erase(w);
    }
    reap();
}

void Pool::resume(Job *job)
{
    if (Connection *c = job->conn) {
        c->resume();
        update_interest(*c);
    }
    reap();
}

void Pool::for_each_socket(const std::function<void(int, int, PoolSocket *, uint64_t)> &fn) const
{
    each_live(keys_, [&](Connection *c) {
        if (c->socket() >= 0)
            fn(c->socket(), c->events(), c, c->id());
    });
    cancels_->for_each_socket(fn);
}

bool Pool::any_connecting() const { return totals_[int(ConnState::Connecting)] > 0; }

void Pool::on_socket(PoolSocket *s, bool readable, bool writable)
{
    if (s->kind == PoolSocket::Kind::Cancel) {
        cancels_->on_io(*s); /* it finds out what is ready */
        return;
    }
    auto *c = static_cast<Connection *>(s);
    if (!c->closing()) {
        try {
            c->on_io(readable, writable);
            update_interest(*c);
        } catch (...) {
            /* out of memory half way through its input (dispatch, which it
             * may run, contains its own failures): this connection's state
             * cannot be trusted, the others are untouched */
            if (c->statement_may_run())
                (void) send_cancel(c->pg());
            close(*c, "out of memory in the worker");
        }
    }
    reap(false);
}

void Pool::on_timer(Clock::time_point now)
{
    /* calls that waited too long for a connection of a full pool */
    for (auto &[key, kp] : keys_)
        for (auto it = kp->waiting.begin(); it != kp->waiting.end();) {
            if ((*it)->wait_until > now) {
                ++it;
                continue;
            }
            std::unique_ptr<Job> j = std::move(*it);
            it = kp->waiting.erase(it);
            j->sink->on_error(nullptr, "53300", "timed out waiting for a pooled connection",
                              "Every connection of this pool (bgw_proxy.max_pool_connections or the "
                              "cluster's max_connections) stayed busy for bgw_proxy.pool_wait_timeout.");
        }
    /* a snapshot: connections move between lists as they change state,
     * and none is destroyed before reap() */
    for (Connection *c : live_connections()) {
        if (c->closing())
            continue;
        try {
            if (c->state() == ConnState::Lent) {
                settle_lent(*c, now);
                continue;
            }
            c->on_timer(now);
        } catch (...) {
            if (c->statement_may_run()) /* as in on_socket */
                (void) send_cancel(c->pg());
            close(*c, "out of memory in the worker");
        }
    }
    cancels_->on_timer(now);
    reap();
}

Clock::time_point Pool::next_deadline() const
{
    Clock::time_point t = Clock::time_point::max();
    Clock::time_point now = Clock::now();
    for (const auto &[key, kp] : keys_) {
        for (const std::unique_ptr<Job> &j : kp->waiting)
            t = std::min(t, j->wait_until);
        if (!kp->list(ConnState::Closing).empty())
            t = std::min(t, now); /* closed in on_socket: destroy them */
    }
    each_live(keys_, [&](Connection *c) { t = std::min(t, c->next_deadline(now)); });
    return std::min(t, cancels_->next_deadline());
}

/* Destroy the closing connections; let their keys' waiting jobs move on. */
void Pool::reap(bool destroy)
{
    for (auto it = keys_.begin(); it != keys_.end();) {
        KeyPool &kp = *it->second;
        ConnList &closing = kp.list(ConnState::Closing);
        if (!destroy) {
            if (!closing.empty())
                dispatch(kp); /* an idle connection or room for a new one may serve a requeued job */
            ++it;
            continue;
        }
        /* dispatch may close more (an idle one the remote closed) */
        while (!closing.empty()) {
            totals_[int(ConnState::Closing)] -= uint32_t(closing.size());
            closing.clear(); /* PQfinish */
            dispatch(kp);
        }
        if (kp.empty())
            it = keys_.erase(it);
        else
            ++it;
    }
}

void Pool::retire_if(const std::function<bool(const Connection &)> &which, const char *reason)
{
    Clock::time_point now = Clock::now();
    for (Connection *c : live_connections())
        if (!c->closing() && which(*c)) {
            c->retire(reason);
            if (c->state() == ConnState::Lent)
                settle_lent(*c, now); /* closed now, or once given back */
        }
    reap();
}

void Pool::retire_key(const std::string &key)
{
    /* a multi-host partition's nodes have keys of their own: the
     * partition's key, kKeyPartSeparator, the node (worker/node_router.h) */
    retire_if(
        [&](const Connection &c) {
            const std::string &k = c.key();
            return k == key || (k.size() > key.size() && k.compare(0, key.size(), key) == 0 &&
                                k[key.size()] == kKeyPartSeparator);
        },
        "configuration changed");
}

void Pool::retire_database(const std::string &dbname)
{
    retire_if(
        [&](const Connection &c) {
            const char *db = c.database();
            return db && dbname == db;
        },
        "database being dropped");
}

void Pool::close_idle()
{
    retire_if([](const Connection &c) { return c.state() == ConnState::Idle || c.state() == ConnState::Lent; },
              "idle connection closed on request");
}

void Pool::close_all(Clock::time_point cancels_until) noexcept
{
    bool cancel = cancels_until > Clock::now(); /* else nothing could be sent in time */
    std::vector<Connection *> live;
    try {
        live = live_connections();
    } catch (...) {
        cancel = false; /* no memory for the list: close without cancelling */
    }
    for (Connection *c : live) {
        /* Terminate alone would let a running statement finish first */
        if (cancel && c->statement_may_run() && c->socket() >= 0 && !c->cancel_pending())
            (void) send_cancel(c->pg());
        if (watcher_ && c->membership().sock >= 0)
            watcher_->forget(c, c->id());
        if (c->opened() && observer_)
            observer_->disconnected(c->stat_ref(), "the worker is stopping");
    }
    /* lent ones: taken back, or never written to again (no allocation here) */
    each_live(keys_, [&](Connection *c) {
        const Membership &m = c->membership();
        if (m.lent_slot < 0 || !lender_)
            return;
        if (m.state == ConnState::Lent) {
            ConnectionLender::DrainFrom from;
            ConnectionLender::Back b = lender_->take_back(m.lent_slot, &from);
            if (b == ConnectionLender::Back::InUse)
                c->disown_socket();
            else if ((b == ConnectionLender::Back::Broken || b == ConnectionLender::Back::Drain) && cancel)
                (void) send_cancel(c->pg());
        }
        lender_->release(m.lent_slot);
    });
    keys_.clear(); /* PQfinish (not waiting: the sockets are non-blocking), every job still held */
    std::fill(std::begin(totals_), std::end(totals_), 0u);
    cancels_->finish(cancels_until);
}

PoolCounts Pool::counts() const
{
    PoolCounts n;
    n.connecting = totals_[int(ConnState::Resolving)] + totals_[int(ConnState::Connecting)];
    n.idle = totals_[int(ConnState::Idle)] + totals_[int(ConnState::Lent)];
    n.active = totals_[int(ConnState::Busy)];
    n.cancelling = totals_[int(ConnState::Cancelling)];
    n.open = n.connecting + n.idle + n.active + n.cancelling;
    return n;
}

bool Pool::key_counts(const std::string &key, KeyCounts &n) const
{
    auto it = keys_.find(key);
    if (it == keys_.end())
        return false;
    n = it->second->counts();
    return true;
}

void Pool::for_each_key(const std::function<void(const std::string &, const KeyCounts &)> &fn) const
{
    for (const auto &[key, kp] : keys_)
        fn(key, kp->counts());
}

} // namespace bgw
