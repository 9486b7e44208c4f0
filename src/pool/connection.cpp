/*
 * connection.cpp — one remote connection and its job, over non-blocking
 * libpq (see connection.hpp; the state machine is in conn_pool.hpp). Every
 * state change, close and socket change goes through the pool (host_).
 */
#include "pool/connection.hpp"
#include "common/socket_quiet.hpp"

#include <algorithm>
#include <cstring>

#include <fcntl.h>
#include <sys/socket.h>
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

/* The remote must be at least this version for binary results. */
constexpr int kBinaryMinServerVersion = 100000;

/* More distinct queries than this on one connection run unprepared. */
constexpr size_t kMaxPreparedPerConnection = 256;

const char *const kConnectionLost = "lost connection to the remote server";

} // namespace

void Connection::configure(const JobSpec &spec)
{
    require_password_ = spec.require_password;
    stat_ref_ = spec.stat_ref;
    set_lifetime(spec.lifetime_s);
    deadline_ = after_ms(spec.connect_timeout_ms); /* resolving included */
    target_ = std::make_unique<Target>(Target{spec.connstr, spec.user, spec.password, spec.encoding});
    if (names_service(spec.connstr)) {
        /* libpq reads the service file and resolves its hosts as it
         * starts: all of that on the lookup lane, never here */
        resolution_ = start_on_lookup_lane([t = *target_] { return start_connection(t, nullptr); });
        if (!resolution_)
            throw std::bad_alloc();
    } else {
        resolution_ = resolve_hosts_async(spec.connstr);
    }
}

void Connection::set_lifetime(int lifetime_s)
{
    if (lifetime_s == lifetime_s_)
        return;
    lifetime_s_ = lifetime_s;
    if (lifetime_s <= 0) {
        retire_at_ = Clock::time_point::max();
        return;
    }
    /* staggered by up to +-10% so a pool does not reconnect all at once */
    long ms = long(lifetime_s) * 1000;
    long jitter = ms / 10 > 0 ? long(std::hash<const void *>()(this) % uint64_t(ms / 5)) - ms / 10 : 0;
    retire_at_ = created_at_ + std::chrono::milliseconds(ms + jitter);
}

bool Connection::start(std::string &err)
{
    return open(nullptr, err);
}

PGconn *Connection::start_connection(const Target &t, const Resolution *r) noexcept
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
    return PQconnectStartParams(keywords, values, 1);
}

bool Connection::open(Resolution *r, std::string &err) noexcept
{
    /* the password is kept no longer than needed */
    std::unique_ptr<Target> t = std::move(target_);
    if (r && r->started) {
        pg_ = r->started; /* started on the lookup lane: ours now */
        r->started = nullptr;
    } else {
        pg_ = start_connection(*t, r);
    }
    if (!pg_ || PQstatus(pg_) == CONNECTION_BAD) {
        try {
            err = trimmed_error(pg_);
        } catch (...) {
            err.clear(); /* the caller's error says enough */
        }
        return false;
    }
    PQsetnonblocking(pg_, 1);
    PQsetNoticeReceiver(pg_, notice_receiver, this);
    want_write_ = true; /* libpq: poll for writing first */
    interest();
    return true;
}

void Connection::poll_resolution()
{
    if (state() != ConnState::Resolving || !resolution_->done.load(std::memory_order_acquire))
        return;
    ResolutionPtr r = std::move(resolution_);
    if (retired_) {
        /* retired meanwhile: its job goes back to the queue (Pool::close) */
        host_.close(*this, retire_reason_);
        return;
    }
    dns_errors_ = r->dns_errors;
    std::string err;
    if (r->ok) {
        if (!host_.set_state(*this, ConnState::Connecting))
            return;
        if (open(r.get(), err))
            return;
    } else {
        err = r->error.empty() ? std::string("could not resolve the remote host name") : r->error;
    }
    if (pending_)
        host_.connect_failed(std::move(pending_), err);
    host_.close(*this, "connection failed");
}

int Connection::events() const
{
    switch (state()) {
    case ConnState::Resolving:
    case ConnState::Closing:
    case ConnState::Lent: /* another process may be using it */
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

void Connection::run(std::unique_ptr<Job> job)
{
    job_ = std::move(job);
    job_->conn = this;
    job_failed_ = false;
    described_ = false;
    rows_ = 0;
    deadline_ = after_ms(job_->spec.query_timeout_ms);
    if (!host_.set_state(*this, ConnState::Busy))
        return; /* closed: the job has failed */
    if (!send_statement()) {
        fail_job(nullptr, "08006", kConnectionLost, trimmed_error(pg_));
        host_.close(*this, "could not send query");
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
        host_.close(*this, "could not send data");
        return;
    }
    want_write_ = (r == 1);
    interest();
}

void Connection::fail_job(const PGresult *res, const char *sqlstate, const std::string &msg,
                          const std::string &detail)
{
    if (job_ && !job_failed_) {
        job_failed_ = true;
        job_->sink->on_error(res, sqlstate, msg, detail);
    }
}

void Connection::drop_job(const char *reason) noexcept
{
    try {
        fail_job(nullptr, "08006", kConnectionLost, reason ? reason : "");
    } catch (...) {
        /* no memory for the message: the sink still hears the job end */
        static const std::string none;
        fail_job(nullptr, "08006", none, none);
    }
    job_.reset();
}

void Connection::on_io(bool readable, bool writable)
{
    if (state() == ConnState::Connecting) {
        PostgresPollingStatusType st = PQconnectPoll(pg_);
        if (st == PGRES_POLLING_OK && require_password_ && !PQconnectionUsedPassword(pg_)) {
            /* the remote let us in without the password (trust, peer...):
             * a non-superuser must not become another user that way */
            if (std::unique_ptr<Job> j = std::move(pending_))
                j->sink->on_error(nullptr, "28000", "password is required",
                                  "The remote server did not ask for the password of the user mapping; "
                                  "non-superusers may not connect as another user without one.");
            host_.close(*this, "password not used");
            return;
        }
        if (st == PGRES_POLLING_OK && retired_) {
            /* retired while connecting: its job goes back to the queue (Pool::close) */
            host_.close(*this, retire_reason_);
            return;
        }
        if (st == PGRES_POLLING_OK) {
            connected_ = true;
            host_.opened(*this);
            deadline_ = Clock::time_point::max();
            last_used_ = Clock::now();
            if (host_.set_state(*this, ConnState::Idle))
                host_.became_idle(*this);
        } else if (st == PGRES_POLLING_FAILED) {
            std::string msg = trimmed_error(pg_);
            if (!dns_errors_.empty())
                msg += "; " + dns_errors_;
            if (pending_)
                host_.connect_failed(std::move(pending_), msg);
            host_.close(*this, "connection failed");
        } else {
            /* the socket may be another one now: libpq moves on to the
             * next address of the connection string on its own */
            want_write_ = (st == PGRES_POLLING_WRITING);
            interest();
        }
        return;
    }

    if (state() == ConnState::Lent)
        return; /* another process may be reading it: never touched (not watched either) */
    if (raw_) {
        if (readable)
            read_raw();
        return;
    }
    if (state() == ConnState::Busy && want_write_ && writable) {
        flush();
        if (closing())
            return;
    }
    if (readable || state() == ConnState::Idle) {
        if (!PQconsumeInput(pg_)) {
            fail_job(nullptr, "08006", kConnectionLost, trimmed_error(pg_));
            host_.close(*this, "connection lost");
            return;
        }
    }
    if (state() == ConnState::Idle) {
        /* an idle connection has nothing to say; data means trouble */
        if (PQstatus(pg_) != CONNECTION_OK || !PQisBusy(pg_)) {
            PGresult *r;
            while ((r = PQgetResult(pg_)) != nullptr)
                PQclear(r);
        }
        if (PQstatus(pg_) != CONNECTION_OK)
            host_.close(*this, "idle connection closed by remote");
        return;
    }
    process_input();
}

void Connection::process_input()
{
    /* whatever happens below may change what we wait for: paused by the
     * sink, or reading again after an error; told once on the way out */
    struct Tell {
        Connection &c;
        ~Tell() { c.interest(); }
    } tell{*this};
    while (state() == ConnState::Busy || state() == ConnState::Cancelling) {
        bool delivering = state() == ConnState::Busy && job_ && !job_failed_;
        if (delivering && !job_->sink->can_accept())
            return; /* backpressure: resume() will bring us back */
        if (PQisBusy(pg_))
            return;
        PGresult *res = PQgetResult(pg_);
        if (!res) {
            if (state() == ConnState::Cancelling && cancel_pending()) {
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
        host_.close(*this, "could not send query");
        return;
    }
    flush();
}

void Connection::finish_statement()
{
    if (job_ && !job_failed_ && state() == ConnState::Busy && PQtransactionStatus(pg_) == PQTRANS_IDLE) {
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
    bool cancel_unsettled = cancel_ && cancel_->load(std::memory_order_acquire) == CancelOutcome::Unknown;
    cancel_.reset();
    drained_ = false;
    std::unique_ptr<Job> j = std::move(job_);
    if (j && !job_failed_ && state() == ConnState::Busy)
        j->sink->on_done(rows_);
    j.reset(); /* ended: its sink has cleared the caller's handle */
    if (PQtransactionStatus(pg_) != PQTRANS_IDLE || PQstatus(pg_) != CONNECTION_OK) {
        host_.close(*this, "connection not idle after statement");
        return;
    }
    if (cancel_unsettled) {
        /* given up unanswered: it may still arrive and hit the next statement */
        host_.close(*this, "cancel request not confirmed");
        return;
    }
    deadline_ = Clock::time_point::max();
    last_used_ = Clock::now();
    if (!host_.set_state(*this, ConnState::Idle))
        return;
    if (retired_ || last_used_ >= retire_at_) {
        host_.close(*this, retire_reason_);
        return;
    }
    host_.became_idle(*this);
}

void Connection::abandon()
{
    if (state() == ConnState::Connecting || state() == ConnState::Resolving) {
        pending_.reset(); /* it keeps connecting, for the next job */
        return;
    }
    if (state() != ConnState::Busy)
        return;
    job_.reset(); /* its sink hears nothing more */
    cancel_ = host_.send_cancel(pg_);
    if (!cancel_) {
        host_.close(*this, "cancel could not be sent");
        return;
    }
    drained_ = false;
    preparing_.clear();
    describing_ = false;
    resend_unprepared_ = false;
    deadline_ = after_ms(host_.limits().cancel_wait_ms);
    if (host_.set_state(*this, ConnState::Cancelling))
        process_input();
}

void Connection::drain(const ConnectionLender::DrainFrom &from)
{
    raw_ = true;
    raw_skip_ = from.skip;
    raw_head_len_ = std::min(std::max(from.head_len, 0), 4);
    memcpy(raw_head_, from.head, size_t(raw_head_len_));
    raw_last_ = false;
    drained_ = false;
    cancel_ = host_.send_cancel(pg_);
    if (!cancel_) {
        host_.close(*this, "cancel could not be sent");
        return;
    }
    deadline_ = after_ms(host_.limits().cancel_wait_ms);
    if (host_.set_state(*this, ConnState::Cancelling))
        read_raw();
}

/* Messages are dropped whole: a header (type, length), then its body, up
 * to and including ReadyForQuery, which must be the last byte there is. */
void Connection::read_raw()
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(PQsocket(pg_), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            host_.close(*this, "connection lost while draining a statement given up");
            return;
        }
        size_t off = 0, got = size_t(n);
        while (off < got) {
            if (raw_skip_ > 0) {
                size_t take = size_t(std::min<uint64_t>(raw_skip_, got - off));
                raw_skip_ -= take;
                off += take;
                if (raw_skip_ > 0 || !raw_last_)
                    continue;
                if (off != got) {
                    host_.close(*this, "data after ReadyForQuery while draining");
                    return;
                }
                raw_ = raw_last_ = false;
                drained_ = true;
                if (!cancel_pending())
                    finish_statement();
                return;
            }
            raw_head_[raw_head_len_++] = buf[off++];
            if (raw_head_len_ < 5)
                continue;
            raw_head_len_ = 0;
            const auto *u = reinterpret_cast<const unsigned char *>(raw_head_ + 1);
            uint32_t len = uint32_t(u[0]) << 24 | uint32_t(u[1]) << 16 | uint32_t(u[2]) << 8 | uint32_t(u[3]);
            if (len < 4 || (raw_head_[0] == 'Z' && len != 5)) {
                host_.close(*this, "malformed message while draining");
                return;
            }
            raw_last_ = raw_head_[0] == 'Z';
            raw_skip_ = len - 4;
        }
    }
}

bool Connection::fit_for_reuse()
{
    if (PQstatus(pg_) != CONNECTION_OK)
        return false;
    return socket_quiet(PQsocket(pg_));
}

void Connection::disown_socket() noexcept
{
    int sock = socket();
    if (sock < 0)
        return;
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0 && dup2(null, sock) == sock) {
        ::close(null);
        return;
    }
    if (null >= 0)
        ::close(null);
    pg_ = nullptr; /* cannot be made safe to finish: left to the process's exit */
}

void Connection::retire(const char *reason)
{
    retire_reason_ = reason;
    if (state() == ConnState::Idle)
        host_.close(*this, reason);
    else
        retired_ = true;
}

void Connection::expire()
{
    ConnState st = state();
    bool opening = st == ConnState::Connecting || st == ConnState::Resolving;
    const char *reason = st == ConnState::Resolving ? "connect_timeout expired while resolving the host name"
                         : opening                  ? "connect_timeout expired"
                         : st == ConnState::Busy    ? "query_timeout expired"
                                                    : "cancel did not finish in time";
    if (opening && pending_) {
        host_.connect_failed(std::move(pending_), std::string(reason));
    } else if (st == ConnState::Busy && job_) {
        fail_job(nullptr, "57014", std::string("canceling statement due to ") + reason,
                 "bgw_proxy cancelled the remote statement and closed its connection.");
        job_.reset();
    }
    if (statement_may_run())
        (void) host_.send_cancel(pg_);
    host_.close(*this, reason);
}

void Connection::on_timer(Clock::time_point now)
{
    poll_resolution();
    if (closing())
        return;
    ConnState st = state();
    int idle_timeout_s = host_.limits().idle_timeout_s;
    if (st == ConnState::Cancelling && drained_ && !cancel_pending())
        finish_statement();
    else if (deadline_ <= now)
        expire();
    else if (st == ConnState::Idle && idle_timeout_s > 0 && now - last_used_ >= std::chrono::seconds(idle_timeout_s))
        host_.close(*this, "idle_timeout");
    else if (st == ConnState::Idle && (retired_ || now >= retire_at_))
        host_.close(*this, retire_reason_);
}

Clock::time_point Connection::next_deadline(Clock::time_point now) const
{
    ConnState st = state();
    if (st == ConnState::Closing)
        return now; /* to be destroyed: the next on_timer does it */
    Clock::time_point t = deadline_;
    if ((st == ConnState::Cancelling && drained_) || st == ConnState::Resolving)
        t = std::min(t, now + std::chrono::milliseconds(5)); /* poll the cancel's outcome, the lookup */
    int idle_timeout_s = host_.limits().idle_timeout_s;
    if (st == ConnState::Lent && m_.wanted)
        return t; /* in use elsewhere: Pool::on_returns when it comes back */
    bool idle = st == ConnState::Idle || st == ConnState::Lent;
    if (idle && idle_timeout_s > 0)
        t = std::min(t, last_used_ + std::chrono::seconds(idle_timeout_s));
    if (idle)
        t = std::min(t, retired_ ? now : retire_at_);
    return t;
}

} // namespace bgw
