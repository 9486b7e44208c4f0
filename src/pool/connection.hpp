/*
 * connection.hpp — one pooled remote connection; internal to src/pool/.
 *
 * A Connection drives its libpq connection and the one job it runs. It
 * never writes its own state, never closes itself and never reports its
 * socket: it asks its ConnectionHost (the Pool, pool.cpp), which keeps the
 * per-state lists, the counts and the SocketWatcher in step. The pool's
 * bookkeeping on it (Membership) is written by the pool only.
 *
 * Pure C++ + libpq.
 */
#pragma once

#include "common/pure_cxx.h"
#include "pool/cancel_sender.hpp"
#include "pool/conn_pool.hpp"
#include "pool/resolver.hpp"

#include <deque>
#include <list>
#include <unordered_map>

namespace bgw {

using ConnList = std::list<std::unique_ptr<Connection>>;

/* One key's connections, one list per state, and its queue. */
struct KeyPool {
    explicit KeyPool(std::string k) : key(std::move(k)) {}
    std::string key;
    ConnList conns[kConnStates];                /* indexed by ConnState */
    std::deque<std::unique_ptr<Job>> waiting;   /* FIFO */
    int max_connections = 0;                    /* JobSpec::max_connections of the latest job */

    ConnList &list(ConnState s) { return conns[int(s)]; }
    const ConnList &list(ConnState s) const { return conns[int(s)]; }
    /* every connection, closing ones too: their sockets are still open,
     * so they count against the key's limit until destroyed */
    size_t size() const;
    /* not closing: what counts against a lowered limit */
    size_t live() const { return size() - list(ConnState::Closing).size(); }
    bool empty() const { return size() == 0 && waiting.empty(); }
    KeyCounts counts() const;
};

/* What the pool keeps on each of its connections. */
struct Membership {
    ConnState state = ConnState::Connecting;
    KeyPool *kp = nullptr;
    ConnList::iterator node;            /* this connection in kp->list(state) */
    const char *close_reason = nullptr; /* set once, by Pool::close */
    /* what the SocketWatcher was last told (tracked without a watcher too,
     * so one set later is told the truth) */
    int sock = -1;
    int events = 0;
    uint64_t sock_ino = 0;              /* tells a replaced socket of the same number */
    bool sock_settled = false;          /* the socket is final: connected, checked once after */
    int lent_slot = -1;                 /* its ConnectionLender entry, kept while it lives */
    bool wanted = false;                /* Lent and in use elsewhere: the pool waits for it back */
};

class Connection final : public PoolSocket {
public:
    Connection(ConnectionHost &host, uint64_t id, std::string key)
        : PoolSocket(Kind::Connection), host_(host), key_(std::move(key)), id_(id)
    {
    }
    ~Connection() override
    {
        if (pg_)
            PQfinish(pg_); /* sends Terminate: the remote logs a clean disconnect */
    }
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    /* Take the connection settings and timers of the job it is opened for,
     * and start resolving its host names if there are any (resolving()). */
    void configure(const JobSpec &spec);
    bool resolving() const { return resolution_ != nullptr; }
    /* Not resolving: start connecting now. False (and err) if libpq could
     * not even start; the pool then closes the connection. */
    bool start(std::string &err);

    /* The job it is being opened for: run once connected, back to the
     * queue if it closes first. */
    void set_pending(std::unique_ptr<Job> job) { pending_ = std::move(job); }
    std::unique_ptr<Job> take_pending() { return std::move(pending_); }
    bool pending_is(const Job *job) const { return pending_.get() == job; }
    bool has_pending() const { return pending_ != nullptr; }

    void run(std::unique_ptr<Job> job);              /* Idle: send its statement */
    void on_io(bool readable, bool writable);
    void on_timer(Clock::time_point now);            /* resolution, deadlines, idle/lifetime */
    Clock::time_point next_deadline(Clock::time_point now) const;
    void abandon();                                  /* Busy: drop the job, cancel, drain */
    /* Lent, given back mid-statement: cancel it and read the socket
     * (not libpq: the statement was never libpq's) to its ReadyForQuery,
     * from where the borrower stopped; then Idle as after abandon(). */
    void drain(const ConnectionLender::DrainFrom &from);
    void resume()
    {
        if (job_)
            process_input();
    }

    /* Checked before an idle connection gets a job: an idle connection has
     * nothing to say, so a readable socket (data, EOF, error) means the
     * remote closed it or is about to; it is dropped, not used. */
    bool fit_for_reuse();
    /* false once retired or past its connection_lifetime */
    bool serves_new_jobs(Clock::time_point now) const { return !retired_ && now < retire_at_; }
    /* connection_lifetime as the latest job says (0: none), counted from
     * when the connection was made: a lowered one holds at once */
    void set_lifetime(int lifetime_s);
    /* Lent: it was in use elsewhere until t (not idle for the idle timeout) */
    void note_used(Clock::time_point t) { last_used_ = std::max(last_used_, t); }
    Clock::time_point last_used() const { return last_used_; }
    /* Lent and being closed while another process may use its socket:
     * from now on nothing is written to that socket (PQfinish's Terminate
     * goes to /dev/null); the other process's copy keeps it open. */
    void disown_socket() noexcept;
    /* Serve no new job: close when idle (now, or once the statement ends). */
    void retire(const char *reason);
    const char *retire_reason() const { return retire_reason_; }
    bool retired() const { return retired_; }

    /* Closing: a job still running fails, with the reason as detail. */
    void drop_job(const char *reason) noexcept;
    /* The remote may still be running a statement of ours: closing alone
     * would let it run on until it next talks to us. */
    bool statement_may_run() const
    {
        return state() == ConnState::Busy || (state() == ConnState::Cancelling && !drained_);
    }
    /* a cancel request for its statement is still on its way */
    bool cancel_pending() const { return cancel_ && cancel_->load(std::memory_order_acquire) == CancelOutcome::Pending; }

    int socket() const { return pg_ ? PQsocket(pg_) : -1; }
    int events() const;
    ConnState state() const { return m_.state; }
    bool closing() const { return m_.state == ConnState::Closing; }
    const char *close_reason() const { return m_.close_reason; }
    const std::string &key() const { return key_; }
    uint64_t id() const { return id_; }
    const char *database() const { return pg_ ? PQdb(pg_) : nullptr; }
    PGconn *pg() const { return pg_; }
    bool opened() const { return connected_; }
    int64_t stat_ref() const { return stat_ref_; }

    const Membership &membership() const { return m_; }
    Membership &membership(Pool::Access) { return m_; }

private:
    static void notice_receiver(void *arg, const PGresult *res);
    /* the connection string and the resolution's host, hostaddr, port */
    struct Target;
    static PGconn *start_connection(const Target &t, const Resolution *r) noexcept;
    /* never throws: a job may already be pending on the connection */
    bool open(Resolution *r, std::string &err) noexcept;
    void poll_resolution();
    void expire();
    void flush();
    void process_input();
    void fail_job(const PGresult *res, const char *sqlstate, const std::string &msg,
                  const std::string &detail = std::string());
    void finish_statement();
    void sent_or_died(bool sent);
    bool send_statement();
    void interest() { host_.update_interest(*this); }

    ConnectionHost &host_;
    Membership m_;
    std::string key_;
    uint64_t id_;                     /* unique in the pool: sockets are reused */
    PGconn *pg_ = nullptr;
    bool want_write_ = true;          /* Connecting: poll direction; Busy: flush pending */
    std::unique_ptr<Job> job_;        /* the job whose results we deliver */
    std::unique_ptr<Job> pending_;    /* a job waiting for this connection to finish connecting */
    bool job_failed_ = false;         /* error delivered, draining the rest */
    bool described_ = false;          /* on_describe called for this statement */

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
    int64_t stat_ref_ = -1;           /* the JobSpec::stat_ref it was opened for */
    bool connected_ = false;          /* the handshake succeeded (observer told) */
    bool require_password_ = false;   /* from the job that opened the connection */
    bool prepare_ok_ = false;
    bool resend_unprepared_ = false;  /* execute found no statement: run it plain */
    uint64_t next_statement_ = 0;     /* names are never reused: a prepare whose
                                       * outcome we dropped may exist remotely */
    CancelTicket cancel_;             /* Cancelling: what became of the request */
    bool drained_ = false;            /* Cancelling: the statement has ended */
    /* drain(): reading the raw stream to ReadyForQuery */
    bool raw_ = false;
    uint64_t raw_skip_ = 0;           /* bytes of the current message still to drop */
    char raw_head_[5] = {};           /* the next message's header, as it comes */
    int raw_head_len_ = 0;
    bool raw_last_ = false;           /* the current message is ReadyForQuery */
    void read_raw();
    uint64_t rows_ = 0;
    Clock::time_point deadline_ = Clock::time_point::max();
    Clock::time_point last_used_ = Clock::now();
    const Clock::time_point created_at_ = Clock::now();
    int lifetime_s_ = 0;                                     /* connection_lifetime, seconds */
    Clock::time_point retire_at_ = Clock::time_point::max(); /* from it */
    bool retired_ = false;            /* retire(): serves no new job, closes when idle */
    const char *retire_reason_ = "connection_lifetime";

    /* what the connection is opened with, kept until it is opened */
    struct Target {
        std::string connstr, user, password, encoding;
    };
    std::unique_ptr<Target> target_;
    ResolutionPtr resolution_;        /* while Resolving */
    std::string dns_errors_;          /* host names that did not resolve, for the error */
};

} // namespace bgw
