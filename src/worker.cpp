/*
 * worker.cpp — a bgw_proxy background worker: the PostgreSQL side of the
 * event loop.
 *
 * Each worker owns one submission queue and one connection Pool. Its loop:
 * reset latch, take tickets from its queue (SUBMITTED -> RUNNING), read the
 * request from the slot's request ring, hand one job per target to the pool,
 * stream what the jobs produce into the slot's response ring, and release
 * the slot (-> DONE) when the call is over or abandoned; then wait on one
 * WaitEventSet of its latch, postmaster death and every pooled socket.
 *
 * Nothing in the loop blocks: rings are used with nowait, libpq is
 * non-blocking, cancels go to cancel_sender's thread. PostgreSQL calls that
 * could raise an error are made through pg_call(), so C++ frames unwind; an
 * error that escapes the loop ends the process (exit code 1, restarted by
 * the postmaster after 1 s) and the exit callback hands every call in flight
 * back to its backend as failed.
 */
#include <cstring>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <string>
#include <vector>

#include "conn_pool.hpp"
#include "pool_stats_worker.h"
#include "guc.h"
#include "shmem.h"
#include "wire.hpp"
#include "worker.h"

#include "pg_headers.h"
#include "cxx_boundary.h"

extern "C" {
#include "postmaster/interrupt.h"
PGDLLEXPORT void bgw_proxy_worker_main(Datum main_arg);
}

namespace bgw {

namespace {

struct Call;

constexpr size_t kLastErrorText = 256;

/* One target of a call: receives its job's output and encodes it. */
struct Task final : QuerySink {
    Call *call = nullptr;
    uint16 index = 0;
    Job *job = nullptr;
    bool finished = false;
    JobTally tally;                  /* for pg_stat_bgw_proxy */

    bool can_accept() override;
    void on_describe(const PGresult *res) override;
    void on_row(const PGresult *row) override;
    void on_notice(const PGresult *notice) override;
    void on_error(const PGresult *res, const char *sqlstate, const std::string &message,
                  const std::string &detail) override;
    void on_done(uint64_t rows) override;
};

enum class Phase { Receiving, Running, Finishing };

struct Call {
    int slot = -1;
    MemoryContext cxt = nullptr;     /* the ring handles live here */
    shm_mq_handle *request = nullptr;
    shm_mq_handle *response = nullptr;
    Phase phase = Phase::Receiving;
    bool abandoned = false;          /* backend gone: drop without reply */
    bool accounted = false;          /* counted as ended (account_end) */
    std::deque<std::string> outbox;  /* encoded messages not yet in the ring */
    std::vector<std::unique_ptr<Task>> tasks;
};

struct Worker {
    int index = -1;
    uint32 incarnation = 0;
    WorkerState *state = nullptr;
    Pool pool;
    StatBook stats;
    std::vector<std::unique_ptr<Call>> calls;
    /* per (database, role, cluster, partition, remote user): the pool key
     * and cluster configuration its last call used */
    std::unordered_map<std::string, std::pair<std::string, int64>> last_config;
    uint64 drop_epoch = 0;           /* ProxyShared.drop_epoch last acted on */
    WaitEventSet *wes = nullptr;
    std::vector<std::tuple<int, int, uint64_t>> wes_sockets; /* what wes was built for */
};

/* Never destroyed: the exit callback uses it after the loop is gone. */
Worker *self = nullptr;

using Buf = std::string;

void put_error_fields(wire::Writer<Buf> &w, const PGresult *res, const char *sqlstate,
                      const std::string &message, const std::string &detail = std::string())
{
    auto field = [res](int code) -> const char * {
        return res ? PQresultErrorField(res, code) : nullptr;
    };
    char state[5];
    memcpy(state, sqlstate && strlen(sqlstate) == 5 ? sqlstate : "XX000", 5);
    w.raw(state, 5);
    const char *sev = field(PG_DIAG_SEVERITY_NONLOCALIZED);
    w.str(sev ? sev : "ERROR");
    const char *primary = field(PG_DIAG_MESSAGE_PRIMARY);
    if (primary)
        w.str(primary);
    else {
        std::string m = message;
        while (!m.empty() && (m.back() == '\n' || m.back() == ' '))
            m.pop_back();
        w.str(m.c_str(), m.size());
    }
    const char *remote_detail = field(PG_DIAG_MESSAGE_DETAIL);
    w.str(remote_detail ? remote_detail : detail.c_str());
    w.str(field(PG_DIAG_MESSAGE_HINT));
    w.str(field(PG_DIAG_CONTEXT));
}

/* Every target is read as its results arrive: holding a connection unread
 * while waiting for another could deadlock calls against the pool limits.
 * The backend puts the rows back in target order. */
bool Task::can_accept() { return call->outbox.empty(); }

void Task::on_describe(const PGresult *res)
{
    Buf b;
    wire::Writer<Buf> w(b);
    int n = PQnfields(res);
    w.u8(wire::kDescribe);
    w.u16(index);
    w.u16(uint16(n));
    for (int i = 0; i < n; i++) {
        w.str(PQfname(res, i));
        w.u32(PQftype(res, i));
        w.u8(uint8(PQfformat(res, i)));
    }
    tally.binary = n > 0 && PQfformat(res, 0) == 1;
    call->outbox.push_back(std::move(b));
}

void Task::on_row(const PGresult *row)
{
    Buf b;
    wire::Writer<Buf> w(b);
    int n = PQnfields(row);
    w.u8(wire::kRow);
    w.u16(index);
    w.u16(uint16(n));
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(row, 0, i))
            w.null_blob();
        else {
            w.blob(PQgetvalue(row, 0, i), size_t(PQgetlength(row, 0, i)));
            tally.bytes_received += uint64(PQgetlength(row, 0, i));
        }
    }
    tally.rows++;
    call->outbox.push_back(std::move(b));
}

/* Called from inside libpq (its notice receiver): nothing may be thrown
 * through it, so a notice that cannot be encoded is dropped. */
void Task::on_notice(const PGresult *notice)
{
    try {
        Buf b;
        wire::Writer<Buf> w(b);
        w.u8(wire::kNotice);
        w.u16(index);
        const char *st = PQresultErrorField(notice, PG_DIAG_SQLSTATE);
        put_error_fields(w, notice, st ? st : "00000", PQresultErrorMessage(notice));
        call->outbox.push_back(std::move(b));
    } catch (...) {
    }
}

void Task::on_error(const PGresult *res, const char *sqlstate, const std::string &message,
                    const std::string &detail)
{
    Buf b;
    wire::Writer<Buf> w(b);
    w.u8(wire::kError);
    w.u16(index);
    put_error_fields(w, res, sqlstate, message, detail);
    call->outbox.push_back(std::move(b));
    finished = true;
    job = nullptr;
    /* last_error: the remote's message, or ours with libpq's reason */
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    char text[kLastErrorText];
    if (primary)
        snprintf(text, sizeof(text), "%s", primary);
    else if (!detail.empty())
        snprintf(text, sizeof(text), "%s: %s", message.c_str(), detail.c_str());
    else
        snprintf(text, sizeof(text), "%s", message.c_str());
    self->stats.job_ended(tally, JobOutcome::Failed, text);
}

void Task::on_done(uint64_t rows)
{
    Buf b;
    wire::Writer<Buf> w(b);
    w.u8(wire::kTargetDone);
    w.u16(index);
    w.u64(rows);
    call->outbox.push_back(std::move(b));
    finished = true;
    job = nullptr;
    tally.rows = rows;
    self->stats.job_ended(tally, JobOutcome::Done);
}

/* ------------------------------------------------------------ slots */

/* Publish DONE, then wake the owner; the owner is read first, since after
 * DONE the slot is no longer ours to read. */
void set_done_and_wake(RequestSlot *s)
{
    PGPROC *owner = s->owner;
    pg_write_barrier();
    pg_atomic_write_u32(&s->state, SLOT_DONE);
    if (owner)
        SetLatch(&owner->procLatch);
}

/* Count the call as ended, once. Done before its final message is sent, so
 * a backend that has seen the end of its call also sees the counters. */
void account_end(Call &c)
{
    if (c.accounted)
        return;
    c.accounted = true;
    pg_atomic_fetch_sub_u32(&self->state->in_flight, 1);
    pg_atomic_fetch_add_u64(&self->state->served, 1);
    pg_atomic_fetch_add_u64(&proxy_shared->completed, 1);
}

/* Give the slot back: the worker never touches it again after DONE.
 * The rings are not detached: detaching would set the backend's latch for
 * nothing (it learns the end from the final message, or already left);
 * deleting the call's context frees the handles. */
void release_slot(Call &c)
{
    account_end(c);
    RequestSlot *s = request_slot(c.slot);
    if (c.cxt)
        MemoryContextDelete(c.cxt);
    c.cxt = nullptr;
    c.request = c.response = nullptr;
    set_done_and_wake(s);
}

/* The call ends before its jobs: the caller left (Cancelled), or the
 * worker gave up on it (Failed, with why). Targets that already ended are
 * not counted again. */
void abandon_jobs(Call &c, JobOutcome outcome = JobOutcome::Cancelled, const char *why = nullptr)
{
    for (auto &t : c.tasks) {
        if (t->job) {
            Job *j = t->job;
            t->job = nullptr;
            t->finished = true;
            self->pool.abandon(j);
        }
        self->stats.job_ended(t->tally, outcome, why);
    }
}

void pick_up(Ticket t)
{
    if (t.slot >= uint32(proxy_shared->nslots))
        return;
    RequestSlot *s = request_slot(int(t.slot));
    /* A ticket left behind by a call its backend abandoned before pickup
     * must not take the slot's next call, which may be meant for another
     * worker. generation/worker are only rewritten while the slot is FREE,
     * so a mismatch seen here is final; a match followed by a lost CAS
     * race only means the call ends up served here, which is still correct. */
    pg_read_barrier();
    if (s->generation != t.generation || s->worker != self->index)
        return;
    uint32 expected = SLOT_SUBMITTED;
    if (!pg_atomic_compare_exchange_u32(&s->state, &expected, SLOT_RUNNING))
        return; /* stale ticket, or the backend gave up first */
    /* whichever worker won the CAS serves the call: say so, for the
     * backend's wake-ups and liveness checks and for reclaim */
    s->worker = self->index;
    s->worker_incarnation = self->incarnation;
    pg_atomic_fetch_add_u64(&proxy_shared->picked_up, 1);

    auto call = std::make_unique<Call>();
    call->slot = int(t.slot);
    pg_call([&] {
        call->cxt = AllocSetContextCreate(TopMemoryContext, "bgw_proxy call", ALLOCSET_SMALL_SIZES);
        MemoryContext old = MemoryContextSwitchTo(call->cxt);
        auto *req = static_cast<shm_mq *>(slot_request_ring(call->slot));
        auto *resp = static_cast<shm_mq *>(slot_response_ring(call->slot));
        shm_mq_set_receiver(req, MyProc);
        shm_mq_set_sender(resp, MyProc);
        call->request = shm_mq_attach(req, nullptr, nullptr);
        call->response = shm_mq_attach(resp, nullptr, nullptr);
        MemoryContextSwitchTo(old);
    });
    self->calls.push_back(std::move(call));
    pg_atomic_fetch_add_u32(&self->state->in_flight, 1);
}

/* Connections made for an older configuration of a partition are retired
 * once idle: for a function-defined cluster, when a call comes with a
 * higher version (a lower one is a backend that has not seen the bump yet:
 * ignored, so two versions in use cannot make the pool flip); for a SQL/MED
 * cluster, when the connection string or user mapping password changed. */
void retire_on_config_change(const std::string &who, const JobSpec &spec, int64 version)
{
    auto &seen = self->last_config;
    auto it = seen.find(who);
    if (it == seen.end()) {
        if (seen.size() >= 100000)
            seen.clear(); /* forgetting only delays a retirement to idle_timeout */
        seen.emplace(who, std::make_pair(spec.key, version));
        return;
    }
    auto &[key, seen_version] = it->second;
    bool newer = version >= 0 ? version > seen_version : key != spec.key;
    if (newer) {
        self->pool.retire_key(key);
        key = spec.key;
        seen_version = version;
    }
}

/* DROP DATABASE (ours or another backend's) waits for the sessions on that
 * database to leave: retire our connections to a database of that name. */
void retire_for_dropped_database()
{
    if (pg_atomic_read_u64(&proxy_shared->drop_epoch) == self->drop_epoch)
        return;
    char names[kDropRing][NAMEDATALEN];
    int n = 0;
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    uint64 epoch = pg_atomic_read_u64(&proxy_shared->drop_epoch);
    uint64 from = std::max(self->drop_epoch + 1, epoch >= kDropRing ? epoch - kDropRing + 1 : 1);
    for (uint64 e = from; e <= epoch; e++)
        memcpy(names[n++], proxy_shared->drop_names[e % kDropRing], NAMEDATALEN);
    LWLockRelease(proxy_shared->lock);
    self->drop_epoch = epoch;
    for (int i = 0; i < n; i++) {
        names[i][NAMEDATALEN - 1] = '\0';
        self->pool.retire_database(names[i]);
    }
}

bool read_result_columns(wire::Reader &r, std::vector<ResultColumn> &out)
{
    uint16 n;
    if (!r.u16(n))
        return false;
    out.resize(n);
    for (ResultColumn &c : out) {
        wire::Span name;
        if (!r.str(name) || !r.u32(c.type))
            return false;
        c.name.assign(name.data, name.len);
    }
    return true;
}

/* A request that cannot be decoded is a bug, but only this call pays. */
void fail_call(Call &c, const char *message)
{
    Buf b;
    wire::Writer<Buf> w(b);
    w.u8(wire::kError);
    w.u16(0);
    put_error_fields(w, nullptr, "XX000", message);
    c.outbox.push_back(std::move(b));
    c.phase = Phase::Finishing;
}

void start_call(Call &c, const char *data, Size len)
{
    wire::Reader r(data, len);
    uint32 magic, flags, connect_ms, query_ms, max_conns, lifetime_s, wait_ms, ntargets;
    wire::Span function, cluster, query;
    uint64 config_version;
    std::vector<ResultColumn> columns;
    if (!r.u32(magic) || magic != wire::kRequestMagic || !r.u32(flags) || !r.u32(connect_ms) ||
        !r.u32(query_ms) || !r.u32(max_conns) || !r.u32(lifetime_s) || !r.u32(wait_ms) || !r.str(function) ||
        !r.str(cluster) || !r.u64(config_version) || !r.str(query) || !read_result_columns(r, columns) || !r.u32(ntargets) ||
        ntargets == 0 || ntargets > 65535) {
        fail_call(c, "bgw_proxy: malformed request");
        return;
    }
    RequestSlot *s = request_slot(c.slot);
    std::vector<JobSpec> specs(ntargets);
    std::vector<uint32> partitions;
    for (auto &spec : specs) {
        uint32 partition, nparams;
        wire::Span connstr, user, password, encoding;
        uint8 require_password;
        if (!r.u32(partition) || !r.str(connstr) || !r.str(user) || !r.str(password) ||
            !r.u8(require_password) || !r.str(encoding) || !r.u32(nparams)) {
            fail_call(c, "bgw_proxy: malformed request");
            return;
        }
        partitions.push_back(partition);
        spec.connstr.assign(connstr.data, connstr.len);
        spec.user.assign(user.data, user.len);
        spec.password.assign(password.data, password.len);
        spec.require_password = require_password != 0;
        spec.encoding.assign(encoding.data, encoding.len);
        spec.key = spec.connstr + '\x1f' + spec.user + '\x1f' + spec.password + '\x1f' + spec.encoding + '\x1f' +
                   std::to_string(s->roleid) + (spec.require_password ? "\x1fp" : "");
        spec.connect_timeout_ms = int(connect_ms);
        spec.query_timeout_ms = int(query_ms);
        spec.prepare = (flags & wire::kFlagPrepare) != 0;
        spec.binary = (flags & wire::kFlagNoBinary) == 0;
        spec.result_types = columns;
        spec.max_connections = int(max_conns);
        spec.lifetime_s = int(lifetime_s);
        spec.pool_wait_timeout_ms = int(wait_ms);
        spec.query.assign(query.data, query.len);
        spec.params.resize(nparams);
        spec.param_null.resize(nparams);
        for (uint32 i = 0; i < nparams; i++) {
            wire::Span p;
            if (!r.blob(p)) {
                fail_call(c, "bgw_proxy: malformed request");
                return;
            }
            spec.param_null[i] = p.is_null;
            if (!p.is_null)
                spec.params[i].assign(p.data, p.len);
        }
    }
    c.phase = Phase::Running;
    for (uint32 i = 0; i < ntargets; i++) {
        auto t = std::make_unique<Task>();
        t->call = &c;
        t->index = uint16(i);
        c.tasks.push_back(std::move(t));
    }
    std::string cluster_name(cluster.data, cluster.len);
    for (uint32 i = 0; i < ntargets; i++) {
        std::string caller = partition_caller(s->dbid, s->roleid, cluster_name, partitions[i], specs[i].user);
        if (!cluster_name.empty())
            retire_on_config_change(caller, specs[i], int64(config_version));
        Task *t = c.tasks[i].get();
        specs[i].stat_ref = self->stats.job_starting(caller, s->dbid, s->roleid, cluster_name, partitions[i],
                                                    specs[i], self->pool);
        t->tally.stat_ref = specs[i].stat_ref;
        t->tally.started = Clock::now();
    }
    /* tasks are all in place before any job can report to them */
    for (uint32 i = 0; i < ntargets; i++) {
        Task *t = c.tasks[i].get();
        self->pool.submit(std::move(specs[i]), t, &t->job);
    }
}

/* Move encoded messages into the response ring until it is full. */
void flush_outbox(Call &c)
{
    while (!c.outbox.empty() && !c.abandoned) {
        const std::string &m = c.outbox.front();
        shm_mq_result r = pg_call([&] {
            bool last = c.outbox.size() == 1;
            return shm_mq_send(c.response, m.size(), m.data(), true, last);
        });
        if (r == SHM_MQ_WOULD_BLOCK)
            return;
        if (r == SHM_MQ_DETACHED) {
            c.abandoned = true;
            return;
        }
        c.outbox.pop_front();
    }
}

/* Advance one call as far as it can go without waiting. True when done. */
bool step_call(Call &c)
{
    RequestSlot *s = request_slot(c.slot);
    if (pg_atomic_read_u32(&s->cancel) != 0)
        c.abandoned = true;

    if (!c.abandoned && c.phase == Phase::Receiving) {
        Size len;
        void *data;
        shm_mq_result r = pg_call([&] { return shm_mq_receive(c.request, &len, &data, true); });
        if (r == SHM_MQ_SUCCESS)
            start_call(c, static_cast<const char *>(data), len);
        else if (r == SHM_MQ_DETACHED)
            c.abandoned = true;
    }

    if (c.abandoned) {
        abandon_jobs(c);
        c.outbox.clear();
        release_slot(c);
        return true;
    }

    bool had_backlog = !c.outbox.empty();
    flush_outbox(c);
    if (had_backlog && c.outbox.empty())
        for (auto &t : c.tasks)
            if (t->job)
                self->pool.resume(t->job);

    if (c.phase == Phase::Running) {
        bool all_done = true;
        for (auto &t : c.tasks)
            all_done = all_done && t->finished;
        if (all_done) {
            account_end(c);
            Buf b;
            wire::Writer<Buf> w(b);
            w.u8(wire::kCallDone);
            c.outbox.push_back(std::move(b));
            c.phase = Phase::Finishing;
            flush_outbox(c);
        }
    }
    if (c.phase == Phase::Finishing && c.outbox.empty() && !c.abandoned) {
        release_slot(c);
        return true;
    }
    return false;
}

void step_all_calls()
{
    auto &calls = self->calls;
    for (size_t i = 0; i < calls.size();) {
        bool done;
        bool failed = false;
        char msg[256] = {0};
        try {
            done = step_call(*calls[i]);
        } catch (const std::exception &e) {
            /* one call's failure (out of memory, a message too large for
             * the ring...) must not take the others down with the worker */
            strlcpy(msg, e.what(), sizeof(msg));
            Call &c = *calls[i];
            abandon_jobs(c, JobOutcome::Failed, msg);
            c.outbox.clear();
            release_slot(c);
            done = failed = true;
        }
        if (done)
            calls.erase(calls.begin() + long(i));
        else
            i++;
        if (failed)
            pg_call([&] { ereport(LOG, (errmsg("bgw_proxy worker %d gave up a call: %s", self->index, msg))); });
    }
}

void publish_gauges()
{
    PoolCounts n = self->pool.counts();
    WorkerState *w = self->state;
    pg_atomic_write_u32(&w->conns_open, n.open);
    pg_atomic_write_u32(&w->conns_idle, n.idle);
    pg_atomic_write_u32(&w->conns_active, n.active + n.cancelling);
    pg_atomic_write_u32(&w->conns_connecting, n.connecting);
    pg_atomic_write_u64(&w->connects, self->pool.connects());
    pg_atomic_write_u32(&w->run_state, self->calls.empty() ? WORKER_IDLE : WORKER_BUSY);
    self->stats.publish(self->pool);
}

/* Rebuild the wait set when the sockets or their interests changed. */
void prepare_wait_set()
{
    std::vector<std::tuple<int, int, uint64_t>> want;
    std::vector<Connection *> conns;
    self->pool.for_each_socket([&](int sock, int events, Connection *c, uint64_t id) {
        if (events) {
            want.emplace_back(sock, events, id);
            conns.push_back(c);
        }
    });
    if (self->wes && want == self->wes_sockets && !self->pool.any_connecting())
        return;
    pg_call([&] {
        if (self->wes)
            FreeWaitEventSet(self->wes);
        self->wes = CreateWaitEventSet(TopMemoryContext, int(want.size()) + 2);
        AddWaitEventToSet(self->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(self->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        for (size_t i = 0; i < want.size(); i++) {
            int events = std::get<1>(want[i]);
            uint32 ev = ((events & 1) ? WL_SOCKET_READABLE : 0) | ((events & 2) ? WL_SOCKET_WRITEABLE : 0);
            AddWaitEventToSet(self->wes, ev, std::get<0>(want[i]), nullptr, conns[i]);
        }
    });
    self->wes_sockets = std::move(want);
}

void apply_limits()
{
    PoolLimits l;
    l.max_per_key = guc_max_pool_connections;
    l.idle_timeout_s = guc_idle_timeout_s;
    self->pool.set_limits(l);
}

void run_loop()
{
    constexpr int kMaxEvents = 64;
    WaitEvent events[kMaxEvents];

    for (;;) {
        ResetLatch(MyLatch);
        if (ShutdownRequestPending)
            return;
        /* DROP DATABASE and others wait until every process with a
         * ProcSignal slot (we have one) absorbs their barrier */
        if (ProcSignalBarrierPending)
            pg_call([] { ProcessProcSignalBarrier(); });
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            pg_call([] { ProcessConfigFile(PGC_SIGHUP); });
            apply_limits();
        }

        retire_for_dropped_database();
        Ticket t;
        while (worker_queue(self->index)->pop(t))
            pick_up(t);
        step_all_calls();
        self->pool.on_timer(Clock::now());
        step_all_calls();
        publish_gauges();

        prepare_wait_set();
        long timeout = 1000;
        Clock::time_point deadline = self->pool.next_deadline();
        if (deadline != Clock::time_point::max()) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            timeout = std::max<long>(0, std::min<long>(timeout, long(ms) + 1));
        }
        int n = pg_call([&] {
            return WaitEventSetWait(self->wes, timeout, events, kMaxEvents, PG_WAIT_EXTENSION);
        });
        for (int i = 0; i < n; i++) {
            if (!(events[i].events & WL_SOCKET_MASK))
                continue;
            auto *c = static_cast<Connection *>(events[i].user_data);
            /* a socket event of a connection closed earlier in this batch
             * cannot arrive: the pool only deletes in reap(), and the set
             * is rebuilt before the next wait */
            self->pool.on_socket(c, events[i].events & WL_SOCKET_READABLE,
                                 events[i].events & WL_SOCKET_WRITEABLE);
        }
    }
}

/* Runs on every exit path (normal, error, SIGTERM): give back every slot. */
void worker_exit(int code, Datum arg)
{
    (void) code;
    (void) arg;
    if (!self)
        return;
    WorkerState *w = self->state;
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    w->proc = nullptr;
    pg_atomic_write_u32(&w->pid, 0);
    pg_atomic_write_u32(&w->run_state, WORKER_STOPPED);
    LWLockRelease(proxy_shared->lock);

    for (auto &c : self->calls) {
        c->abandoned = true;
        account_end(*c);
        for (auto &t : c->tasks)
            self->stats.job_ended(t->tally, JobOutcome::Failed, "bgw_proxy worker exited during the call");
        RequestSlot *s = request_slot(c->slot);
        if (c->request)
            shm_mq_detach(c->request);
        if (c->response)
            shm_mq_detach(c->response);
        c->request = c->response = nullptr;
        set_done_and_wake(s);
    }
    self->calls.clear();
    self->pool.close_all(); /* Terminate messages: clean disconnects remotely */
    self->stats.zero_gauges();

    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    pg_atomic_write_u32(&w->conns_open, 0);
    pg_atomic_write_u32(&w->conns_idle, 0);
    pg_atomic_write_u32(&w->conns_active, 0);
    pg_atomic_write_u32(&w->conns_connecting, 0);
    LWLockRelease(proxy_shared->lock);
}

/* Slots a previous incarnation of this worker held when it died without
 * its exit callback: their backends are told the call failed. */
void reclaim_orphaned_slots()
{
    for (int i = 0; i < proxy_shared->nslots; i++) {
        RequestSlot *s = request_slot(i);
        if (s->worker == self->index && pg_atomic_read_u32(&s->state) == SLOT_RUNNING &&
            s->worker_incarnation != self->incarnation) {
            pg_atomic_fetch_add_u64(&proxy_shared->completed, 1);
            set_done_and_wake(s);
        }
    }
}

} // namespace

void register_workers(void)
{
    for (int i = 0; i < guc_workers; i++) {
        BackgroundWorker w;
        memset(&w, 0, sizeof(w));
        /* a "connection" to no database: no catalog access, but a row in
         * pg_stat_activity with our wait events */
        w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
        w.bgw_start_time = BgWorkerStart_ConsistentState;
        w.bgw_restart_time = 1;
        strlcpy(w.bgw_library_name, "bgw_proxy", sizeof(w.bgw_library_name));
        strlcpy(w.bgw_function_name, "bgw_proxy_worker_main", sizeof(w.bgw_function_name));
        snprintf(w.bgw_name, sizeof(w.bgw_name), "bgw_proxy worker %d", i);
        strlcpy(w.bgw_type, "bgw_proxy worker", sizeof(w.bgw_type));
        w.bgw_main_arg = Int32GetDatum(i);
        RegisterBackgroundWorker(&w);
    }
}

void wake_worker(int w)
{
    WorkerState *ws = worker_state(w);
    if (pg_atomic_read_u32(&ws->pid) != 0) {
        pg_read_barrier();
        PGPROC *p = ws->proc;
        if (p)
            SetLatch(&p->procLatch);
    }
}

int worker_for_key(const char *key, size_t len)
{
    uint32 h = hash_bytes(reinterpret_cast<const unsigned char *>(key), int(len));
    return int(h % uint32(proxy_shared->nworkers));
}

} // namespace bgw

using namespace bgw;

void bgw_proxy_worker_main(Datum main_arg)
{
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
    BackgroundWorkerUnblockSignals();

    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
    pgstat_report_appname("bgw_proxy worker");

    int index = DatumGetInt32(main_arg);
    if (!proxy_shared || index < 0 || index >= proxy_shared->nworkers || !MyProc)
        ereport(FATAL, (errmsg("bgw_proxy worker %d: shared state not available", index)));

    cxx_entry([&] {
        self = new Worker();
        self->index = index;
        self->state = worker_state(index);
        self->stats.start(index);
        self->pool.set_observer(&self->stats);
    });
    apply_limits();
    self->drop_epoch = pg_atomic_read_u64(&proxy_shared->drop_epoch);

    WorkerState *w = self->state;
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    self->incarnation = pg_atomic_add_fetch_u32(&w->incarnation, 1);
    w->proc = MyProc;
    w->started_at = GetCurrentTimestamp();
    pg_atomic_write_u32(&w->in_flight, 0);
    pg_write_barrier();
    pg_atomic_write_u32(&w->pid, uint32(MyProcPid));
    pg_atomic_write_u32(&w->run_state, WORKER_IDLE);
    LWLockRelease(proxy_shared->lock);
    before_shmem_exit(worker_exit, 0);

    reclaim_orphaned_slots();
    ereport(LOG, (errmsg("bgw_proxy worker %d started", index)));

    cxx_entry([] { run_loop(); });

    /* SIGTERM: exit 1 so the postmaster starts us again (unless it is
     * shutting down); the exit callback has failed our calls. */
    ereport(LOG, (errmsg("bgw_proxy worker %d shutting down", index)));
    proc_exit(1);
}
