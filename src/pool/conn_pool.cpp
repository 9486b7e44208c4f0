/*
 * conn_pool.cpp — see conn_pool.hpp for the state machine.
 */
#include "pool/conn_pool.hpp"
#include "pool/cancel_sender.hpp"
#include "pool/resolver.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include <poll.h>
#include <unistd.h>

namespace bgw {

namespace {

Clock::time_point after_ms(int ms)
{
    return ms > 0 ? Clock::now() + std::chrono::milliseconds(ms) : Clock::time_point::max();
}

/* libpq's message on one line: it ends in a newline and may wrap with tabs */
std::string trimmed_error(PGconn *pg)
{
    std::string m = pg ? PQerrorMessage(pg) : "out of memory";
    while (!m.empty() && (m.back() == '\n' || m.back() == ' '))
        m.pop_back();
    std::string out;
    for (char ch : m) {
        if (ch == '\n' || ch == '\t') {
            if (!out.empty() && out.back() != ' ')
                out += ' ';
        } else {
            out += ch;
        }
    }
    return out;
}

/* Binary results only where every column the remote statement returns is
 * allowed by the caller's policy (spec.binary_type_ok) and exactly the type the proxy function declares for it
 * (matched by name, or the single scalar): a value of another type would
 * have to be converted locally, through text, with the caller's settings
 * (TimeZone, DateStyle, extra_float_digits) instead of the remote's. */
bool binary_matches(const PGresult *res, const JobSpec &spec)
{
    const std::vector<ResultColumn> &want = spec.result_types;
    int n = PQnfields(res);
    if (n == 0 || want.empty())
        return false;
    bool scalar = want.size() == 1 && want[0].name.empty();
    for (int i = 0; i < n; i++) {
        Oid type = PQftype(res, i);
        uint32_t declared = 0;
        if (scalar)
            declared = n == 1 ? want[0].type : 0;
        else
            for (const ResultColumn &c : want)
                if (c.name == PQfname(res, i))
                    declared = c.type;
        if (!spec.binary_type_ok(type) || declared != type)
            return false;
    }
    return true;
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

/* The remote must be at least this version for binary results. */
constexpr int kBinaryMinServerVersion = 100000;

/* More distinct queries than this on one connection run unprepared. */
constexpr size_t kMaxPreparedPerConnection = 256;

const char *const kConnectFailed = "could not connect to the remote server";
const char *const kConnectionLost = "lost connection to the remote server";

} // namespace

class Connection {
public:
    Connection(Pool &pool, const std::string &key) : pool_(pool), key_(key) {}
    ~Connection()
    {
        if (pg_)
            PQfinish(pg_); /* sends Terminate: the remote logs a clean disconnect */
    }

    bool start_connect(const JobSpec &spec, std::string &err);
    /* Resolving: open the connection once the host names are resolved */
    void poll_resolution();
    void run(Job *job);
    void on_io(bool readable, bool writable);
    void abandon();
    void resume() { if (job_) process_input(); }

    int socket() const { return pg_ ? PQsocket(pg_) : -1; }
    int events() const;
    ConnState state() const { return state_; }
    const std::string &key() const { return key_; }
    Clock::time_point deadline() const { return deadline_; }
    Clock::time_point last_used() const { return last_used_; }
    Job *job() const { return job_; }

    /* a deadline passed: fail the job (if any); the pool closes us */
    void expire();

    /* Checked before an idle connection gets a job: an idle connection has
     * nothing to say, so a readable socket (data, EOF, error) means the
     * remote closed it or is about to; it is dropped, not used. */
    bool fit_for_reuse();

    /* Serve no new job: close when idle (now, or once the statement ends). */
    void retire(const char *reason);

private:
    static void notice_receiver(void *arg, const PGresult *res);
    void flush();
    void process_input();
    void fail_job(const PGresult *res, const char *sqlstate, const std::string &msg,
                  const std::string &detail = std::string());
    void finish_statement();
    void sent_or_died(bool sent);

    Pool &pool_;
    std::string key_;
    PGconn *pg_ = nullptr;
    ConnState state_ = ConnState::Connecting;
    bool want_write_ = true;     /* Connecting: poll direction; Busy: flush pending */
    bool dead_ = false;          /* set when the pool must close us */
    const char *dead_reason_ = nullptr;
    Job *job_ = nullptr;         /* the job whose results we deliver */
    Job *pending_ = nullptr;     /* a job waiting for this connection to finish connecting */
    bool job_failed_ = false;    /* error delivered, draining the rest */
    bool described_ = false;     /* on_describe called for this statement */

    /* prepared statements of this connection: query text -> name, format */
    struct Prepared {
        std::string name;
        bool binary;
    };
    std::unordered_map<std::string, Prepared> prepared_;
    bool describing_ = false;         /* prepared; its describe is under way */
    bool describe_binary_ = false;    /* what the describe said */
    bool prepare_disabled_ = false;   /* the remote lost one: a pooler in between */
    std::string preparing_;           /* name being prepared for job_, or empty */
    uint64_t id_ = 0;                 /* unique in the pool: sockets are reused */
    int64_t stat_ref_ = -1;           /* the JobSpec::stat_ref it was opened for */
    bool connected_ = false;          /* the handshake succeeded (observer told) */
    bool require_password_ = false;   /* from the job that opened the connection */
    bool prepare_ok_ = false;
    bool resend_unprepared_ = false;  /* execute found no statement: run it plain */
    uint64_t next_statement_ = 0;     /* names are never reused: a prepare whose
                                       * outcome we dropped may exist remotely */
    CancelDone cancel_done_;          /* Cancelling: set once the request went out */
    bool drained_ = false;            /* Cancelling: the statement has ended */
    bool send_statement();
    uint64_t rows_ = 0;
    int query_timeout_ms_ = 0;
    Clock::time_point deadline_ = Clock::time_point::max();
    Clock::time_point last_used_ = Clock::now();
    Clock::time_point retire_at_ = Clock::time_point::max(); /* connection_lifetime */
    bool retired_ = false;            /* retire(): serves no new job, closes when idle */
    const char *retire_reason_ = "connection_lifetime";

    /* what the connection is opened with, kept while Resolving */
    struct Target {
        std::string connstr, user, password, encoding;
    };
    bool open(const Target &t, const Resolution *r, std::string &err);
    ResolutionPtr resolution_;
    std::unique_ptr<Target> target_;
    std::string dns_errors_;          /* host names that did not resolve, for the error */

    friend class Pool;
};

bool Connection::start_connect(const JobSpec &spec, std::string &err)
{
    require_password_ = spec.require_password;
    stat_ref_ = spec.stat_ref;
    if (spec.lifetime_s > 0) {
        /* staggered by up to +-10% so a pool does not reconnect all at once */
        long ms = long(spec.lifetime_s) * 1000;
        long jitter = ms / 10 > 0 ? long(std::hash<const void *>()(this) % uint64_t(ms / 5)) - ms / 10 : 0;
        retire_at_ = Clock::now() + std::chrono::milliseconds(ms + jitter);
    }
    deadline_ = after_ms(spec.connect_timeout_ms); /* resolving included */
    Target t{spec.connstr, spec.user, spec.password, spec.encoding};
    resolution_ = resolve_hosts_async(spec.connstr);
    if (resolution_) {
        state_ = ConnState::Resolving;
        target_ = std::make_unique<Target>(std::move(t));
        return true;
    }
    return open(t, nullptr, err);
}

bool Connection::open(const Target &t, const Resolution *r, std::string &err)
{
    /* dbname carries the whole connection string (expand_dbname); what
     * follows overrides it, so the encoding always matches the caller's. */
    /* user and password are separate keywords, never text appended to the
     * string: that would break URIs and strings ending in a backslash */
    const char *keywords[9] = {"dbname", "client_encoding", "fallback_application_name"};
    const char *values[9] = {t.connstr.c_str(), t.encoding.c_str(), "bgw_proxy"};
    int n = 3;
    auto add = [&](const char *k, const std::string &v) {
        if (!v.empty()) {
            keywords[n] = k;
            values[n++] = v.c_str();
        }
    };
    add("user", t.user);
    add("password", t.password);
    if (r) {
        add("host", r->host);
        add("hostaddr", r->hostaddr);
        add("port", r->port);
    }
    keywords[n] = values[n] = nullptr;
    pg_ = PQconnectStartParams(keywords, values, 1);
    if (!pg_ || PQstatus(pg_) == CONNECTION_BAD) {
        err = trimmed_error(pg_);
        return false;
    }
    PQsetnonblocking(pg_, 1);
    PQsetNoticeReceiver(pg_, notice_receiver, this);
    state_ = ConnState::Connecting;
    want_write_ = true;
    return true;
}

void Connection::poll_resolution()
{
    if (state_ != ConnState::Resolving || !resolution_->done.load(std::memory_order_acquire))
        return;
    ResolutionPtr r = std::move(resolution_);
    std::unique_ptr<Target> t = std::move(target_);
    std::string err;
    if (retired_) {
        /* retired meanwhile: its job goes back to the queue (reap) */
        dead_ = true;
        dead_reason_ = retire_reason_;
        return;
    }
    dns_errors_ = r->dns_errors;
    if (r->ok && open(*t, r.get(), err))
        return;
    if (!r->ok)
        err = r->error.empty() ? std::string("could not resolve the remote host name") : r->error;
    if (pending_) {
        Job *j = pending_;
        pending_ = nullptr;
        pool_.connection_failed(this, j, err);
    }
    dead_ = true;
    dead_reason_ = "connection failed";
}

int Connection::events() const
{
    switch (state_) {
    case ConnState::Resolving:
        return 0;
    case ConnState::Connecting:
        return want_write_ ? 2 : 1;
    case ConnState::Idle:
    case ConnState::Cancelling:
        return 1;
    case ConnState::Busy:
        if (want_write_)
            return 3;
        /* a paused job does not read: its socket must not wake us */
        return (job_ && !job_failed_ && !job_->sink->can_accept()) ? 0 : 1;
    }
    return 0;
}

void Connection::notice_receiver(void *arg, const PGresult *res)
{
    auto *self = static_cast<Connection *>(arg);
    if (self->job_ && !self->job_failed_)
        self->job_->sink->on_notice(res);
}

void Connection::run(Job *job)
{
    job_ = job;
    job->conn = this;
    job_failed_ = false;
    described_ = false;
    rows_ = 0;
    state_ = ConnState::Busy;
    deadline_ = after_ms(job->spec.query_timeout_ms);
    if (!send_statement()) {
        fail_job(nullptr, "08006", kConnectionLost, trimmed_error(pg_));
        dead_ = true;
        dead_reason_ = "could not send query";
        return;
    }
    flush();
}

/* Send job_'s statement: execute it prepared, prepare it first, or send it
 * plain. Called again after a successful prepare. */
bool Connection::send_statement()
{
    const JobSpec &s = job_->spec;
    std::vector<const char *> values(s.params.size());
    std::vector<int> lengths(s.params.size());
    for (size_t i = 0; i < s.params.size(); i++) {
        values[i] = s.param_null[i] ? nullptr : s.params[i].c_str();
        lengths[i] = int(s.params[i].size());
    }
    int n = int(values.size());
    bool use_prepared = s.prepare && !prepare_disabled_ && !resend_unprepared_;
    auto it = use_prepared ? prepared_.find(s.statement_key) : prepared_.end();
    if (it != prepared_.end() && it->second.binary && !s.binary_type_ok) {
        it = prepared_.end(); /* this call wants text (disable_binary): a plain query */
        use_prepared = false;
    }

    if (use_prepared && it == prepared_.end() && prepared_.size() < kMaxPreparedPerConnection) {
        /* unique across sessions too: behind a pooler, another client's
         * statement of the same name may exist in the server session */
        preparing_ = "bgw_proxy_" + std::to_string(getpid()) + "_" + std::to_string(id_) + "_" +
                     std::to_string(++next_statement_);
        prepare_ok_ = false;
        return PQsendPrepare(pg_, preparing_.c_str(), s.query.c_str(), n, nullptr);
    }
    preparing_.clear();
    int ok = (it != prepared_.end())
                 ? PQsendQueryPrepared(pg_, it->second.name.c_str(), n, values.data(), lengths.data(), nullptr,
                                       it->second.binary ? 1 : 0)
                 : PQsendQueryParams(pg_, s.query.c_str(), n, nullptr, values.data(), lengths.data(),
                                     nullptr, 0);
    return ok && PQsetSingleRowMode(pg_);
}

void Connection::flush()
{
    int r = PQflush(pg_);
    if (r < 0) {
        fail_job(nullptr, "08006", kConnectionLost, trimmed_error(pg_));
        dead_ = true;
        dead_reason_ = "could not send data";
        return;
    }
    want_write_ = (r == 1);
}

void Connection::fail_job(const PGresult *res, const char *sqlstate, const std::string &msg,
                          const std::string &detail)
{
    if (job_ && !job_failed_) {
        job_failed_ = true;
        job_->sink->on_error(res, sqlstate, msg, detail);
    }
}

void Connection::on_io(bool readable, bool writable)
{
    if (state_ == ConnState::Connecting) {
        PostgresPollingStatusType st = PQconnectPoll(pg_);
        if (st == PGRES_POLLING_OK && require_password_ && !PQconnectionUsedPassword(pg_)) {
            /* the remote let us in without the password (trust, peer...):
             * a non-superuser must not become another user that way */
            if (pending_) {
                Job *j = pending_;
                pending_ = nullptr;
                j->sink->on_error(nullptr, "28000", "password is required",
                                  "The remote server did not ask for the password of the user mapping; "
                                  "non-superusers may not connect as another user without one.");
                delete j;
            }
            dead_ = true;
            dead_reason_ = "password not used";
            return;
        }
        if (st == PGRES_POLLING_OK && retired_) {
            /* retired while connecting: its job goes back to the queue (reap) */
            dead_ = true;
            dead_reason_ = retire_reason_;
            return;
        }
        if (st == PGRES_POLLING_OK) {
            pool_.connects_++;
            connected_ = true;
            if (pool_.observer_)
                pool_.observer_->connected(stat_ref_);
            state_ = ConnState::Idle;
            deadline_ = Clock::time_point::max();
            last_used_ = Clock::now();
            pool_.connection_idle(this);
        } else if (st == PGRES_POLLING_FAILED) {
            std::string msg = trimmed_error(pg_);
            if (!dns_errors_.empty())
                msg += "; " + dns_errors_;
            if (pending_) {
                Job *j = pending_;
                pending_ = nullptr;
                pool_.connection_failed(this, j, msg);
            }
            dead_ = true;
            dead_reason_ = "connection failed";
        } else {
            want_write_ = (st == PGRES_POLLING_WRITING);
        }
        return;
    }

    if (state_ == ConnState::Busy && want_write_ && writable) {
        flush();
        if (dead_)
            return;
    }
    if (readable || state_ == ConnState::Idle) {
        if (!PQconsumeInput(pg_)) {
            fail_job(nullptr, "08006", kConnectionLost, trimmed_error(pg_));
            dead_ = true;
            dead_reason_ = "connection lost";
            return;
        }
    }
    if (state_ == ConnState::Idle) {
        /* an idle connection has nothing to say; data means trouble */
        if (PQstatus(pg_) != CONNECTION_OK || !PQisBusy(pg_)) {
            PGresult *r;
            while ((r = PQgetResult(pg_)) != nullptr)
                PQclear(r);
        }
        if (PQstatus(pg_) != CONNECTION_OK) {
            dead_ = true;
            dead_reason_ = "idle connection closed by remote";
        }
        return;
    }
    process_input();
}

void Connection::process_input()
{
    while (!dead_ && (state_ == ConnState::Busy || state_ == ConnState::Cancelling)) {
        bool delivering = state_ == ConnState::Busy && job_ && !job_failed_;
        if (delivering && !job_->sink->can_accept())
            return; /* backpressure: resume() will bring us back */
        if (PQisBusy(pg_))
            return;
        PGresult *res = PQgetResult(pg_);
        if (!res) {
            if (state_ == ConnState::Cancelling && cancel_done_ && !cancel_done_->load(std::memory_order_acquire)) {
                /* a cancel still on its way could hit the next statement:
                 * reuse the connection only once it has been delivered */
                drained_ = true;
                return;
            }
            finish_statement();
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        if (delivering && !preparing_.empty()) {
            /* the answer to PQsendPrepare (or to its describe): ok, or
             * the error for the job */
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (st == PGRES_COMMAND_OK && describing_) {
                describe_binary_ = binary_matches(res, job_->spec);
            } else if (st == PGRES_COMMAND_OK) {
                prepare_ok_ = true;
            } else if (code && (strcmp(code, "26000") == 0 || strcmp(code, "42P05") == 0)) {
                /* a transaction-mode pooler sent the prepare and its describe
                 * to different sessions (or one where the name is taken):
                 * this connection stops preparing, the call runs plain */
                prepare_disabled_ = true;
                prepared_.clear();
                prepare_ok_ = false;
                describing_ = false;
                resend_unprepared_ = true;
            } else {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                /* an error libpq made itself (the connection broke) has none */
                if (!state)
                    state = PQstatus(pg_) == CONNECTION_BAD ? "08006" : "XX000";
                fail_job(res, state, PQresultErrorMessage(res));
            }
        } else if (delivering && st == PGRES_FATAL_ERROR && rows_ == 0 && !prepare_disabled_ &&
                   prepared_.count(job_->spec.statement_key) &&
                   strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE) ?: "", "26000") == 0) {
            /* our prepared statement is gone: a pooler hands us other sessions */
            prepare_disabled_ = true;
            prepared_.clear();
            resend_unprepared_ = true;
        } else if (delivering) {
            if ((st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) && !described_) {
                described_ = true;
                job_->sink->on_describe(res);
            }
            if (st == PGRES_SINGLE_TUPLE) {
                rows_++;
                job_->sink->on_row(res);
            } else if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR ||
                       st == PGRES_BAD_RESPONSE) {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                /* an error libpq made itself (the connection broke) has none */
                if (!state)
                    state = PQstatus(pg_) == CONNECTION_BAD ? "08006" : "XX000";
                fail_job(res, state, PQresultErrorMessage(res));
            }
        }
        PQclear(res);
    }
}

/* After queueing the next message of a statement: flush it, or fail. */
void Connection::sent_or_died(bool sent)
{
    if (!sent) {
        fail_job(nullptr, "08006", kConnectionLost, trimmed_error(pg_));
        dead_ = true;
        dead_reason_ = "could not send query";
        return;
    }
    flush();
}

void Connection::finish_statement()
{
    if (job_ && !job_failed_ && state_ == ConnState::Busy && PQtransactionStatus(pg_) == PQTRANS_IDLE) {
        /* the first half of prepare-then-execute, or a resend */
        bool next = false;
        if (!preparing_.empty() && prepare_ok_ && !describing_ && job_->spec.binary_type_ok &&
            PQserverVersion(pg_) >= kBinaryMinServerVersion) {
            /* which format its results can come in: asked once */
            describing_ = true;
            describe_binary_ = false;
            sent_or_died(PQsendDescribePrepared(pg_, preparing_.c_str()));
            return;
        }
        if (!preparing_.empty() && prepare_ok_) {
            prepared_.emplace(job_->spec.statement_key, Prepared{preparing_, describing_ && describe_binary_});
            describing_ = false;
            next = true;
        } else if (resend_unprepared_) {
            next = true;
        }
        if (next) {
            bool sent = send_statement();
            resend_unprepared_ = false;
            sent_or_died(sent);
            return;
        }
    }
    preparing_.clear();
    describing_ = false;
    resend_unprepared_ = false;
    cancel_done_.reset();
    drained_ = false;
    Job *j = job_;
    bool ok = j && !job_failed_ && state_ == ConnState::Busy;
    job_ = nullptr;
    if (ok)
        j->sink->on_done(rows_);
    if (j)
        pool_.job_finished(j);
    if (PQtransactionStatus(pg_) != PQTRANS_IDLE || PQstatus(pg_) != CONNECTION_OK) {
        dead_ = true;
        dead_reason_ = "connection not idle after statement";
        return;
    }
    state_ = ConnState::Idle;
    deadline_ = Clock::time_point::max();
    last_used_ = Clock::now();
    if (retired_ || last_used_ >= retire_at_) {
        dead_ = true;
        dead_reason_ = retire_reason_;
        return;
    }
    pool_.connection_idle(this);
}

void Connection::abandon()
{
    Job *j = job_;
    if (state_ == ConnState::Connecting || state_ == ConnState::Resolving) {
        pending_ = nullptr;
        return;
    }
    if (state_ != ConnState::Busy)
        return;
    job_ = nullptr;
    if (j)
        pool_.job_finished(j);
    cancel_done_ = send_cancel_async(pg_);
    if (!cancel_done_) {
        dead_ = true;
        dead_reason_ = "cancel could not be sent";
        return;
    }
    state_ = ConnState::Cancelling;
    drained_ = false;
    preparing_.clear();
    describing_ = false;
    resend_unprepared_ = false;
    deadline_ = after_ms(pool_.limits_.cancel_wait_ms);
    process_input();
}

bool Connection::fit_for_reuse()
{
    if (PQstatus(pg_) != CONNECTION_OK)
        return false;
    struct pollfd pfd;
    pfd.fd = PQsocket(pg_);
    pfd.events = POLLIN;
    pfd.revents = 0;
    int n = poll(&pfd, 1, 0);
    return n == 0 || (n < 0 && errno == EINTR);
}

void Connection::retire(const char *reason)
{
    retire_reason_ = reason;
    if (state_ == ConnState::Idle) {
        dead_ = true;
        dead_reason_ = reason;
    } else {
        retired_ = true;
    }
}

void Connection::expire()
{
    bool opening = state_ == ConnState::Connecting || state_ == ConnState::Resolving;
    const char *reason = state_ == ConnState::Resolving ? "connect_timeout expired while resolving the host name"
                         : opening                      ? "connect_timeout expired"
                         : state_ == ConnState::Busy     ? "query_timeout expired"
                                                         : "cancel did not finish in time";
    if (opening && pending_) {
        Job *j = pending_;
        pending_ = nullptr;
        pool_.connection_failed(this, j, std::string(reason));
    } else if (state_ == ConnState::Busy && job_) {
        fail_job(nullptr, "57014", std::string("canceling statement due to ") + reason,
                 "bgw_proxy cancelled the remote statement and closed its connection.");
        Job *j = job_;
        job_ = nullptr;
        pool_.job_finished(j);
    }
    /* closing alone would let the remote statement run on until it next
     * talks to the client: cancel it first */
    if (state_ == ConnState::Busy || (state_ == ConnState::Cancelling && !drained_))
        (void) send_cancel_async(pg_);
    dead_ = true;
    dead_reason_ = reason;
}

/* ---------------------------------------------------------------- Pool */

Pool::~Pool() { close_all(); }

void Pool::submit(JobSpec spec, QuerySink *sink, Job **handle)
{
    auto *job = new Job{std::move(spec), sink, nullptr};
    job->spec.statement_key = statement_key(job->spec);
    job->queued_at = Clock::now();
    job->wait_until = after_ms(job->spec.pool_wait_timeout_ms);
    /* the caller holds the job before anything can fail or finish it; the
     * sink clears *handle when the job ends */
    *handle = job;
    KeyPool &kp = keys_[job->spec.key];
    kp.waiting.push_back(job);
    dispatch(kp);
    reap();
}

/* Give waiting jobs idle connections, open new ones within the limit. */
void Pool::dispatch(KeyPool &kp)
{
    while (!kp.waiting.empty()) {
        Connection *idle = nullptr;
        size_t connecting_free = 0;
        for (Connection *c : kp.conns) {
            if (c->dead_)
                continue;
            if (c->state_ == ConnState::Idle && !idle)
                idle = c;
            if ((c->state_ == ConnState::Connecting || c->state_ == ConnState::Resolving) && !c->pending_ &&
                !c->retired_)
                connecting_free++;
        }
        Job *job = kp.waiting.front();
        if (idle && (idle->retired_ || idle->retire_at_ <= Clock::now())) {
            idle->dead_ = true;
            idle->dead_reason_ = idle->retire_reason_;
            continue; /* reap() closes it; look for another */
        }
        if (idle && !idle->fit_for_reuse()) {
            idle->dead_ = true;
            idle->dead_reason_ = "idle connection closed by remote";
            continue;
        }
        if (idle) {
            kp.waiting.pop_front();
            idle->run(job);
            continue;
        }
        /* connections being opened for earlier jobs will serve them */
        if (connecting_free > 0)
            return;
        int limit = job->spec.max_connections > 0 ? job->spec.max_connections : limits_.max_per_key;
        if (int(kp.conns.size()) >= limit)
            return; /* wait for a connection of this key to become idle */
        kp.waiting.pop_front();
        auto *c = new Connection(*this, job->spec.key);
        c->id_ = ++connection_ids_;
        kp.conns.push_back(c);
        std::string err;
        if (!c->start_connect(job->spec, err)) {
            c->dead_ = true;
            c->dead_reason_ = "connection failed";
            job->sink->on_error(nullptr, "08001", kConnectFailed, err);
            delete job;
            continue;
        }
        c->pending_ = job;
    }
}

void Pool::connection_idle(Connection *c)
{
    if (c->pending_) {
        Job *j = c->pending_;
        c->pending_ = nullptr;
        c->run(j);
        return;
    }
    KeyPool &kp = keys_[c->key_];
    dispatch(kp);
}

void Pool::connection_failed(Connection *c, Job *job, const std::string &msg)
{
    (void) c;
    job->sink->on_error(nullptr, "08001", kConnectFailed, msg);
    delete job;
}

void Pool::job_finished(Job *job) { delete job; }

void Pool::abandon(Job *job)
{
    if (job->conn) {
        job->conn->abandon(); /* deletes the job */
    } else {
        for (auto &[key, kp] : keys_) {
            for (Connection *c : kp.conns)
                if (c->pending_ == job)
                    c->pending_ = nullptr; /* it keeps connecting, for the next job */
            auto it = std::find(kp.waiting.begin(), kp.waiting.end(), job);
            if (it != kp.waiting.end())
                kp.waiting.erase(it);
        }
        delete job;
    }
    reap();
}

void Pool::resume(Job *job)
{
    if (job->conn)
        job->conn->resume();
    reap();
}

void Pool::for_each_socket(const std::function<void(int, int, Connection *, uint64_t)> &fn) const
{
    for (const auto &[key, kp] : keys_)
        for (Connection *c : kp.conns)
            if (!c->dead_ && c->socket() >= 0)
                fn(c->socket(), c->events(), c, c->id_);
}

bool Pool::any_connecting() const
{
    for (const auto &[key, kp] : keys_)
        for (Connection *c : kp.conns)
            if (c->state_ == ConnState::Connecting)
                return true;
    return false;
}

void Pool::on_socket(Connection *c, bool readable, bool writable)
{
    if (!c->dead_)
        c->on_io(readable, writable);
    reap();
}

void Pool::on_timer(Clock::time_point now)
{
    /* calls that waited too long for a connection of a full pool */
    for (auto &[key, kp] : keys_)
        for (auto it = kp.waiting.begin(); it != kp.waiting.end();) {
            Job *j = *it;
            if (j->wait_until > now) {
                ++it;
                continue;
            }
            it = kp.waiting.erase(it);
            j->sink->on_error(nullptr, "53300", "timed out waiting for a pooled connection",
                              "Every connection of this pool (bgw_proxy.max_pool_connections or the "
                              "cluster's max_connections) stayed busy for bgw_proxy.pool_wait_timeout.");
            delete j;
        }
    for (auto &[key, kp] : keys_)
        for (Connection *c : kp.conns) {
            if (c->dead_)
                continue;
            c->poll_resolution();
            if (c->dead_)
                continue;
            if (c->state_ == ConnState::Cancelling && c->drained_ && c->cancel_done_ &&
                c->cancel_done_->load(std::memory_order_acquire))
                c->finish_statement();
            else if (c->deadline_ <= now)
                c->expire();
            else if (c->state_ == ConnState::Idle && limits_.idle_timeout_s > 0 &&
                     now - c->last_used_ >= std::chrono::seconds(limits_.idle_timeout_s)) {
                c->dead_ = true;
                c->dead_reason_ = "idle_timeout";
            } else if (c->state_ == ConnState::Idle && (c->retired_ || now >= c->retire_at_)) {
                c->dead_ = true;
                c->dead_reason_ = c->retire_reason_;
            }
        }
    reap();
}

Clock::time_point Pool::next_deadline() const
{
    Clock::time_point t = Clock::time_point::max();
    for (const auto &[key, kp] : keys_)
        for (Job *j : kp.waiting)
            t = std::min(t, j->wait_until);
    for (const auto &[key, kp] : keys_)
        for (Connection *c : kp.conns) {
            t = std::min(t, c->deadline_);
            if ((c->state_ == ConnState::Cancelling && c->drained_) || c->state_ == ConnState::Resolving)
                t = std::min(t, Clock::now() + std::chrono::milliseconds(5)); /* poll the helper thread */
            if (c->state_ == ConnState::Idle && limits_.idle_timeout_s > 0)
                t = std::min(t, c->last_used_ + std::chrono::seconds(limits_.idle_timeout_s));
            if (c->state_ == ConnState::Idle)
                t = std::min(t, c->retire_at_);
        }
    return t;
}

/* Close connections marked dead; let their keys' waiting jobs move on. */
void Pool::reap()
{
    for (auto it = keys_.begin(); it != keys_.end();) {
        KeyPool &kp = it->second;
        bool closed = false;
        for (auto c = kp.conns.begin(); c != kp.conns.end();) {
            if ((*c)->dead_) {
                Connection *dead = *c;
                c = kp.conns.erase(c);
                if (dead->pending_) {
                    kp.waiting.push_front(dead->pending_);
                    dead->pending_ = nullptr;
                }
                if (dead->job_) {
                    dead->fail_job(nullptr, "08006", kConnectionLost,
                                   dead->dead_reason_ ? dead->dead_reason_ : "");
                    job_finished(dead->job_);
                    dead->job_ = nullptr;
                }
                if (dead->connected_ && observer_)
                    observer_->disconnected(dead->stat_ref_);
                delete dead;
                closed = true;
            } else {
                ++c;
            }
        }
        if (closed)
            dispatch(kp);
        if (kp.conns.empty() && kp.waiting.empty())
            it = keys_.erase(it);
        else
            ++it;
    }
}

void Pool::retire_if(const std::function<bool(const Connection &)> &which, const char *reason)
{
    for (auto &[key, kp] : keys_)
        for (Connection *c : kp.conns)
            if (!c->dead_ && which(*c))
                c->retire(reason);
    reap();
}

void Pool::retire_key(const std::string &key)
{
    retire_if([&](const Connection &c) { return c.key() == key; }, "configuration changed");
}

void Pool::retire_database(const std::string &dbname)
{
    retire_if([&](const Connection &c) { return c.pg_ && dbname == PQdb(c.pg_); }, "database being dropped");
}

void Pool::close_all()
{
    for (auto &[key, kp] : keys_) {
        for (Connection *c : kp.conns) {
            /* Terminate alone would let a running statement finish first.
             * This is the exit path, so a short synchronous cancel to a
             * server we are connected to is acceptable here. */
            if (c->state_ == ConnState::Busy && c->pg_) {
                if (PGcancel *cancel = PQgetCancel(c->pg_)) {
                    char errbuf[256];
                    (void) PQcancel(cancel, errbuf, sizeof(errbuf));
                    PQfreeCancel(cancel);
                }
            }
            if (c->connected_ && observer_)
                observer_->disconnected(c->stat_ref_);
            delete c;
        }
        for (Job *j : kp.waiting)
            delete j;
    }
    keys_.clear();
}

static void count_connection(PoolCounts &n, ConnState st)
{
    n.open++;
    switch (st) {
    case ConnState::Resolving:
    case ConnState::Connecting: n.connecting++; break;
    case ConnState::Idle: n.idle++; break;
    case ConnState::Busy: n.active++; break;
    case ConnState::Cancelling: n.cancelling++; break;
    }
}

static KeyCounts count_key(const std::deque<Job *> &waiting, const std::list<Connection *> &conns)
{
    KeyCounts n;
    for (Connection *c : conns)
        count_connection(n, c->state());
    n.waiting = uint32_t(waiting.size());
    if (!waiting.empty())
        n.oldest_wait = waiting.front()->queued_at;
    return n;
}

bool Pool::key_counts(const std::string &key, KeyCounts &n) const
{
    auto it = keys_.find(key);
    if (it == keys_.end())
        return false;
    n = count_key(it->second.waiting, it->second.conns);
    return true;
}

void Pool::for_each_key(const std::function<void(const std::string &, const KeyCounts &)> &fn) const
{
    for (const auto &[key, kp] : keys_)
        fn(key, count_key(kp.waiting, kp.conns));
}

PoolCounts Pool::counts() const
{
    PoolCounts n;
    for (const auto &[key, kp] : keys_)
        for (Connection *c : kp.conns)
            count_connection(n, c->state());
    return n;
}

} // namespace bgw
