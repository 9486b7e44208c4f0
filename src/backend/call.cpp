/*
 * call.cpp — see call.h. The slot state machine is described in shmem.h,
 * the messages in slot_protocol.hpp.
 */
#include "common/conninfo.hpp"
#include "backend/call.h"
#include "backend/cluster_gate.h"
#include "backend/direct_call.h"
#include "backend/string_info_buf.h"
#include "common/guc.h"
#include "shared/shmem.h"
#include "shared/slot_protocol.hpp"
#include "shared/workers.h"

#include "common/pg_headers.h"

namespace bgw {

namespace {

/* The call this backend has in flight, for the error and exit paths. */
struct ActiveCall {
    int slot = -1;
    MemoryContext cxt = nullptr;     /* the ring handles live here; made once, reset after each call */
    shm_mq_handle *request = nullptr;
    shm_mq_handle *response = nullptr;
};
ActiveCall active;
bool exit_hook_registered = false;

/* True while a remote error or notice is being re-raised: it carries its
 * own context line (with the partition), so the call's callback is quiet. */
bool relaying_remote = false;

void call_error_context(void *arg)
{
    if (!relaying_remote)
        errcontext("bgw_proxy function %s", static_cast<const CallRequest *>(arg)->function_name);
}

/* What pg_stat_activity shows while a call waits for its worker. Custom
 * wait event names exist from PostgreSQL 17; before, every extension wait
 * shows as wait_event_type and wait_event "Extension". */
uint32 call_wait_event(void)
{
#if PG_VERSION_NUM >= 170000
    static uint32 event = 0;
    if (event == 0)
        event = WaitEventExtensionNew("BgwProxyCall");
    return event;
#else
    return PG_WAIT_EXTENSION;
#endif
}

/* Wait on our latch, for at most `ms`; interrupts are served. */
void wait_a_little(long ms)
{
    (void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, call_wait_event());
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
}

/* Raise the queues' peak depth to what it is now (just after a push). */
void note_queue_depth(void)
{
    uint64 depth = queue_depth();
    uint64 peak = pg_atomic_read_u64(&proxy_shared->peak_depth);
    while (depth > peak && !pg_atomic_compare_exchange_u64(&proxy_shared->peak_depth, &peak, depth)) {
    }
}

/* Leave the call whatever state it is in; must not raise an error. */
void abandon_active_call(void)
{
    if (active.slot < 0)
        return;
    RequestSlot *s = request_slot(active.slot);
    /* detaching tells the worker we are gone */
    if (active.request)
        shm_mq_detach(active.request);
    if (active.response)
        shm_mq_detach(active.response);
    active.request = active.response = nullptr;
    if (active.cxt)
        MemoryContextReset(active.cxt);

    uint32 expected = SLOT_SUBMITTED;
    if (pg_atomic_compare_exchange_u32(&s->state, &expected, SLOT_FREE)) {
        /* no worker saw it: the call ends here */
        pg_atomic_fetch_add_u64(&proxy_shared->withdrawn, 1);
        pg_atomic_fetch_add_u64(&proxy_shared->completed, 1);
        uncharge_worker(s);
    } else if (expected == SLOT_RUNNING) {
        /* the worker owns it: ask it to cancel and let go */
        pg_atomic_write_u32(&s->cancel, 1);
        wake_worker(s->worker);
    }
    active.slot = -1;
}

void exit_hook(int code, Datum arg)
{
    (void) code;
    (void) arg;
    if (proxy_shared) {
        direct_call_abandon();
        abandon_active_call();
    }
}

/* Our slot is reusable once the worker released the previous call. */
RequestSlot *acquire_slot(int idx)
{
    RequestSlot *s = request_slot(idx);
    TimestampTz start = GetCurrentTimestamp();
    bool counted = false;
    for (;;) {
        uint32 st = pg_atomic_read_u32(&s->state);
        if (st == SLOT_FREE)
            return s;
        if (st == SLOT_DONE) {
            pg_atomic_write_u32(&s->state, SLOT_FREE);
            return s;
        }
        if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), guc_worker_wait_timeout_ms))
            ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                            errmsg("bgw_proxy: the previous call of this session is still being cancelled"),
                            errhint("Try again; if it persists, check the bgw_proxy workers with "
                                    "pg_stat_bgw_proxy_workers.")));
        if (!counted) {
            counted = true;
            pg_atomic_fetch_add_u64(&proxy_shared->slot_waits, 1);
        }
        wait_a_little(10);
    }
}

/* The database name a target's connection string gives, in `buf`; false
 * if it gives none. Nothing allocated: a notice per row must not grow the
 * call's memory. */
constexpr size_t kDbnameBuf = NAMEDATALEN * 4;
bool target_dbname(const CallRequest *req, int target, char *buf)
{
    if (target < 0 || target >= req->ntargets)
        return false;
    return conninfo_copy(req->targets[target].connstr, "dbname", buf, kDbnameBuf);
}

/* "partition 2, database "x"" for error contexts: which remote it was,
 * without anything secret from the connection string. */
char *describe_target(const CallRequest *req, int target)
{
    if (target < 0 || target >= req->ntargets)
        return pstrdup("unknown partition");
    char dbname[kDbnameBuf];
    uint32 partition = req->targets[target].partition;
    return target_dbname(req, target, dbname) ? psprintf("partition %u, database \"%s\"", partition, dbname)
                                              : psprintf("partition %u", partition);
}

void decode_remote(wire::Reader &r, RemoteMessage &m)
{
    proto::ErrorFields f;
    if (!proto::decode_error(r, f))
        ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
                        errmsg("bgw_proxy: malformed error message from worker")));
    auto dup = [](const wire::Span &s) -> char * {
        return s.len ? pnstrdup(s.data, s.len) : nullptr;
    };
    memcpy(m.sqlstate, f.sqlstate, sizeof(m.sqlstate));
    m.message = dup(f.message);
    m.detail = dup(f.detail);
    m.hint = dup(f.hint);
    m.context = dup(f.context);
    m.severity = dup(f.severity);
}

/* a notice per row must not grow the call's memory */
void free_remote(RemoteMessage &m)
{
    for (char *p : {m.message, m.detail, m.hint, m.context, m.severity})
        if (p)
            pfree(p);
}

/* The HINT and CONTEXT lines of a relayed remote message: an argument of
 * the ereport that relays it. */
int remote_hint_and_context(const CallRequest *req, const RemoteMessage &m, const char *where)
{
    if (m.hint)
        errhint("%s", m.hint);
    if (m.context)
        errcontext("remote: %s", m.context);
    errcontext("bgw_proxy function %s, %s", req->function_name, where);
    return 0;
}

void raise_remote(const CallRequest *req, int target, proto::Kind kind, wire::Reader &r)
{
    RemoteMessage m;
    decode_remote(r, m);
    call_raise_remote(req, target, kind == proto::Kind::Notice, m);
}

/*
 * RUN ON ALL with the cluster option partial_results: a partition that
 * fails does not fail the call. Its Error message is kept as it came (the
 * ring reuses its buffer), the partition counts as done so the rows of the
 * partitions after it are not held back (result.cpp returns them in
 * partition order), and once the call is over each failure is reported as
 * a WARNING, in partition order. If every partition failed, the call fails
 * with the first partition's error, as without the option.
 *
 * Rows a partition sent before it failed are kept, not dropped: the rows
 * of the partition at the head of the result are already in the caller's
 * tuplestore by then, so dropping could only be done for some. The WARNING
 * tells the caller that partition's rows may be incomplete.
 */
struct PartialFailures {
    int count;
    char **message;              /* per target: its Error message, NULL if it did not fail */
    Size *len;
};

PartialFailures *partial_failures_for(const CallRequest *req)
{
    if (!req->partial_results)
        return nullptr;
    auto *pf = (PartialFailures *) palloc0(sizeof(PartialFailures));
    pf->message = (char **) palloc0(sizeof(char *) * (req->ntargets + 1));
    pf->len = (Size *) palloc0(sizeof(Size) * (req->ntargets + 1));
    return pf;
}

/* The kept Error message of a target, read again from its start. */
wire::Reader kept_error(const PartialFailures *failed, int target)
{
    wire::Reader rd(failed->message[target], failed->len[target]);
    proto::Kind kind;
    uint16 t;
    (void) proto::decode_head(rd, kind, t); /* decoded once already */
    return rd;
}

void warn_failed_partition(const CallRequest *req, int target, wire::Reader &r)
{
    RemoteMessage m;
    decode_remote(r, m);
    char *where = describe_target(req, target);
    relaying_remote = true;
    ereport(WARNING,
            (errcode(ERRCODE_WARNING),
             errmsg("partition %u of cluster \"%s\" failed: %s", req->targets[target].partition,
                    req->cluster_name ? req->cluster_name : "", m.message ? m.message : "remote error without message"),
             m.detail ? errdetail_internal("Remote SQLSTATE %.5s. %s", m.sqlstate, m.detail)
                      : errdetail_internal("Remote SQLSTATE %.5s.", m.sqlstate),
             remote_hint_and_context(req, m, where)));
    relaying_remote = false;
    free_remote(m);
    pfree(where);
}

wire::Span span_of(const char *s)
{
    wire::Span sp;
    sp.data = s ? s : "";
    sp.len = s ? uint32(strlen(s)) : 0;
    return sp;
}

void encode_request(const CallRequest *req, StringInfoBuf &buf)
{
    proto::Request q;
    q.flags = (guc_remote_prepare ? proto::kFlagPrepare : 0) | (req->disable_binary ? proto::kFlagNoBinary : 0) |
              ((uint32_t(guc_debug_fault) << proto::kFaultShift) & proto::kFaultMask) |
              (req->read ? proto::kFlagRead : 0);
    q.connect_timeout_ms = uint32(req->connect_timeout_ms);
    q.query_timeout_ms = uint32(req->query_timeout_ms);
    q.max_connections = uint32(req->max_connections);
    q.connection_lifetime_s = uint32(req->connection_lifetime_s);
    q.pool_wait_timeout_ms = uint32(guc_pool_wait_timeout_ms);
    q.read_from = req->read_from;
    q.max_replica_lag = uint64(req->max_replica_lag);
    q.health_check_interval_ms = uint32(req->health_check_interval_ms);
    q.health_check_timeout_ms = uint32(req->health_check_timeout_ms);
    q.health_check_retries = uint32(req->health_check_retries);
    q.function = span_of(req->function_name);
    q.cluster = span_of(req->cluster_name);
    q.config_version = req->config_version;
    q.query = span_of(req->query);

    auto *columns = (proto::RequestColumn *) palloc0(sizeof(proto::RequestColumn) * (req->nresult_columns + 1));
    for (int i = 0; i < req->nresult_columns; i++) {
        columns[i].name = span_of(req->result_names[i]);
        columns[i].type = req->result_types[i];
    }
    q.ncolumns = uint16(req->nresult_columns);
    q.columns = columns;

    wire::Span encoding = span_of(GetDatabaseEncodingName());
    auto *targets = (proto::RequestTarget *) palloc0(sizeof(proto::RequestTarget) * (req->ntargets + 1));
    for (int t = 0; t < req->ntargets; t++) {
        const CallTarget &tg = req->targets[t];
        proto::RequestTarget &out = targets[t];
        out.partition = tg.partition;
        out.connstr = span_of(tg.connstr);
        out.weights = span_of(tg.weights);
        out.user = span_of(tg.user);
        out.password = span_of(tg.password);
        out.require_password = tg.require_password;
        out.encoding = encoding;
        out.nparams = uint32(tg.nparams);
        auto *params = (wire::Span *) palloc0(sizeof(wire::Span) * (tg.nparams + 1));
        for (int i = 0; i < tg.nparams; i++) {
            params[i] = span_of(tg.values[i]);
            params[i].is_null = tg.values[i] == nullptr;
        }
        out.params = params;
    }
    q.ntargets = uint32(req->ntargets);
    q.targets = targets;

    initStringInfo(&buf.si);
    proto::encode_request(buf, q);
    for (int t = 0; t < req->ntargets; t++)
        pfree(const_cast<wire::Span *>(targets[t].params));
    pfree(targets);
    pfree(columns);
}

/* Fill our slot (FREE: only we touch it) and attach to its rings. A
 * request that fits the request area is copied there as it is: no ring,
 * so the worker reads it without a round of latch wake-ups. */
void prepare_slot(RequestSlot *s, int idx, int worker, const StringInfoBuf &buf)
{
    s->generation++;
    s->worker = worker;
    s->owner = MyProc;
    s->roleid = GetUserId();
    s->dbid = MyDatabaseId;
    pg_atomic_write_u32(&s->cancel, 0);
    bool plain = Size(buf.si.len) <= proxy_shared->request_ring_size;
    s->request_len = plain ? uint32(buf.si.len) : 0;
    if (plain)
        memcpy(slot_request_ring(idx), buf.si.data, buf.si.len);
    shm_mq *req_mq = nullptr;
    if (!plain) {
        req_mq = shm_mq_create(slot_request_ring(idx), proxy_shared->request_ring_size);
        shm_mq_set_sender(req_mq, MyProc);
    }
    auto *resp_mq = shm_mq_create(slot_response_ring(idx), proxy_shared->response_ring_size);
    shm_mq_set_receiver(resp_mq, MyProc);
    active.slot = idx;
    if (!active.cxt)
        active.cxt = AllocSetContextCreate(TopMemoryContext, "bgw_proxy call", ALLOCSET_SMALL_SIZES);
    MemoryContext old = MemoryContextSwitchTo(active.cxt);
    active.request = plain ? nullptr : shm_mq_attach(req_mq, nullptr, nullptr);
    active.response = shm_mq_attach(resp_mq, nullptr, nullptr);
    MemoryContextSwitchTo(old);
}

/* Publish the slot and queue its ticket on the worker's queue. A full
 * queue is backpressure: wait for the worker to drain it, but not for a
 * worker that is gone. */
void submit_slot(RequestSlot *s, int idx, int worker)
{
    charge_worker(s, worker);
    /* exchange is a full barrier, so the worker that wins the
     * SUBMITTED->RUNNING CAS sees every field written before */
    (void) pg_atomic_exchange_u32(&s->state, SLOT_SUBMITTED);
    pg_atomic_fetch_add_u64(&proxy_shared->submitted, 1);
    Ticket ticket{uint32(idx), s->generation};
    if (!worker_queue(worker)->push(ticket)) {
        pg_atomic_fetch_add_u64(&proxy_shared->queue_full_waits, 1);
        TimestampTz start = GetCurrentTimestamp();
        do {
            if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), guc_worker_wait_timeout_ms))
                ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
                                errmsg("bgw_proxy worker %d's submission queue stayed full", worker),
                                errhint(pg_atomic_read_u32(&worker_state(worker)->pid) == 0
                                            ? "The worker is not running; check the server log."
                                            : "The worker is overloaded; consider more bgw_proxy.workers.")));
            wake_worker(worker);
            wait_a_little(1);
        } while (!worker_queue(worker)->push(ticket));
    }
    wake_worker(worker);
    note_queue_depth();
}

void malformed(const char *what)
{
    ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("bgw_proxy: malformed %s from worker", what)));
}

/* Where a call's responses go. */
struct Delivery {
    const CallRequest *req;
    const ResultSink *sink;
    PartialFailures *failed;     /* RUN ON ALL with partial_results, else NULL */
    int *verdict;                /* taught to direct calls: -1 none yet, 0 text, 1 binary */
};

void deliver_describe(const Delivery &d, int target, wire::Reader &rd)
{
    uint16 n;
    if (!proto::decode_describe_count(rd, n))
        malformed("column list");
    auto *columns = (proto::Column *) palloc0(sizeof(proto::Column) * (n + 1));
    if (!proto::decode_describe(rd, n, columns))
        malformed("column list");
    /* binary or not, for this statement's direct calls: binary only when
     * every target's answer was (learnt once per call, and again only when
     * a later target says text) */
    bool binary = direct_call_binary(d.req, n, columns);
    if (*d.verdict < 0 || (*d.verdict == 1 && !binary)) {
        direct_call_learn(d.req, binary);
        *d.verdict = binary ? 1 : 0;
    }
    d.sink->describe(d.sink->arg, target, n, columns);
    pfree(columns);
}

void deliver_rows(const ResultSink *sink, int target, wire::Reader &rd)
{
    uint16 nfields;
    uint32 nrows;
    if (!proto::decode_rows_head(rd, nfields, nrows))
        malformed("row");
    auto *fields = (wire::Span *) palloc(sizeof(wire::Span) * (nfields + 1));
    for (uint32 i = 0; i < nrows; i++) {
        if (!proto::decode_row(rd, nfields, fields))
            malformed("row");
        sink->row(sink->arg, target, nfields, fields);
    }
    if (!rd.at_end())
        malformed("row");
    pfree(fields);
}


/* An Error of one target of a call with partial results: kept for the
 * WARNING, and the target is done; the call fails only when every target
 * has (with the first one's error). Raised at once otherwise. */
void deliver_error(const Delivery &d, int target, const void *data, Size len, wire::Reader &rd)
{
    PartialFailures *failed = d.failed;
    if (!failed || target >= d.req->ntargets || failed->message[target]) {
        raise_remote(d.req, target, proto::Kind::Error, rd);
        return;
    }
    failed->message[target] = (char *) palloc(len);
    memcpy(failed->message[target], data, len);
    failed->len[target] = len;
    failed->count++;
    d.sink->target_done(d.sink->arg, target);
    if (failed->count == d.req->ntargets) {
        wire::Reader first = kept_error(failed, 0);
        raise_remote(d.req, 0, proto::Kind::Error, first);
    }
}

/* After the call: a WARNING per failed partition, in partition order. */
void warn_partial_failures(const Delivery &d)
{
    if (!d.failed || d.failed->count == 0)
        return;
    for (int t = 0; t < d.req->ntargets; t++) {
        if (!d.failed->message[t])
            continue;
        wire::Reader rd = kept_error(d.failed, t);
        warn_failed_partition(d.req, t, rd);
    }
}

bool deliver_message(const Delivery &d, const void *data, Size len, bool in_batch);

/* Every message of a batch, in order; true if it ended the call. */
bool deliver_batch(const Delivery &d, wire::Reader &rd)
{
    uint32 count;
    if (!proto::decode_batch_count(rd, count))
        malformed("batch");
    for (uint32 i = 0; i < count; i++) {
        wire::Span m;
        if (!proto::decode_batch_message(rd, m))
            malformed("batch");
        if (deliver_message(d, m.data, m.len, true))
            return true; /* the call's end is its last message */
    }
    if (!rd.at_end())
        malformed("batch");
    return false;
}

/* One response message to the sink (or raised); true for the call's end. */
bool deliver_message(const Delivery &d, const void *data, Size len, bool in_batch)
{
    wire::Reader rd(data, len);
    proto::Kind kind;
    uint16 target;
    if (!proto::decode_head(rd, kind, target))
        malformed("message");
    switch (kind) {
    case proto::Kind::CallDone:
        return true;
    case proto::Kind::Batch:
        if (in_batch)
            malformed("batch");
        return deliver_batch(d, rd);
    case proto::Kind::Describe:
        deliver_describe(d, target, rd);
        break;
    case proto::Kind::Rows:
        deliver_rows(d.sink, target, rd);
        break;
    case proto::Kind::Error:
        deliver_error(d, target, data, len, rd);
        break;
    case proto::Kind::Notice:
        raise_remote(d.req, target, kind, rd);
        break;
    case proto::Kind::TargetDone: {
        uint64 rows;
        if (!proto::decode_target_done(rd, rows))
            malformed("message");
        d.sink->target_done(d.sink->arg, target);
        break;
    }
    }
    return false;
}

/* Receive until the worker says the call is over. The worker may also
 * release the slot without a final message (it gave up), or exit. */
void receive_responses(const Delivery &d, RequestSlot *s, int worker, StringInfoBuf &buf, shm_mq_result sent)
{
    TimestampTz submitted_at = GetCurrentTimestamp();
    bool saw_done = false;
    for (;;) {
        if (sent == SHM_MQ_WOULD_BLOCK)
            sent = shm_mq_send(active.request, buf.si.len, buf.si.data, true, true);

        Size len;
        void *data;
        shm_mq_result r = shm_mq_receive(active.response, &len, &data, true);
        if (r == SHM_MQ_SUCCESS) {
            if (deliver_message(d, data, len, false))
                return;
            continue;
        }
        if (saw_done && r != SHM_MQ_DETACHED && s->gave_up == ERRCODE_OUT_OF_MEMORY)
            ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
                            errmsg("bgw_proxy worker %d ran out of memory during the call", s->worker),
                            errdetail("The worker gave up this call only; it goes on serving the others."),
                            errhint("The call was not completed; it may or may not have run remotely.")));
        if (r == SHM_MQ_DETACHED || saw_done)
            ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
                            errmsg("bgw_proxy worker %d %s during the call", s->worker,
                                   r == SHM_MQ_DETACHED ? "exited" : "gave up"),
                            errhint("The call was not completed; it may or may not have run remotely. "
                                    "The server log says why.")));

        uint32 st = pg_atomic_read_u32(&s->state);
        if (st == SLOT_DONE) {
            /* released without a final message: drain once more (what was
             * sent before DONE is visible after this barrier), then fail */
            pg_read_barrier();
            saw_done = true;
            continue;
        }
        if (st == SLOT_SUBMITTED && pg_atomic_read_u32(&worker_state(s->worker)->pid) == 0 &&
            TimestampDifferenceExceeds(submitted_at, GetCurrentTimestamp(), guc_worker_wait_timeout_ms))
            ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
                            errmsg("bgw_proxy worker %d is not running", worker),
                            errhint("Check the server log; workers are restarted by the postmaster.")));
        wait_a_little(1000);
    }
}

/* The body of call_run, between PG_TRY and the clean-up. */
void run_call(const CallRequest *req, const ResultSink *sink)
{
    int idx = call_slot_index();
    RequestSlot *s = acquire_slot(idx);
    if (!req->cluster_name && gate_depth() == 0)
        pg_atomic_write_u64(&s->gate_cluster, 0); /* no pause applies (shmem.h); a call
                                                   * nested in a cluster call's routing
                                                   * leaves that call's gate alone */
    int worker = pick_worker(req->route_key, strlen(req->route_key));

    StringInfoBuf buf;
    encode_request(req, buf);
    int verdict = -1;
    Delivery d = {req, sink, partial_failures_for(req), &verdict};
    prepare_slot(s, idx, worker, buf);

    /* a request too large for the area streams through it: what fits is
     * written before the worker is woken */
    shm_mq_result sent = SHM_MQ_SUCCESS;
    if (active.request) {
        sent = shm_mq_send(active.request, buf.si.len, buf.si.data, true, true);
        if (sent == SHM_MQ_DETACHED)
            ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("bgw_proxy: request ring detached")));
    }
    submit_slot(s, idx, worker);
    receive_responses(d, s, worker, buf, sent);

    /* finished: the worker releases the slot right after the final message.
     * No detach: it would only wake the worker for nothing. */
    MemoryContextReset(active.cxt);
    active.request = active.response = nullptr;
    active.slot = -1;
    pfree(buf.si.data);
    warn_partial_failures(d);
}

} // namespace

/* The remote message, re-raised: ERROR (or the FATAL of a remote session
 * that ended, as a lost connection), or the notice at its level. */
void call_raise_remote(const CallRequest *req, int target, bool notice, RemoteMessage &m)
{
    char *where = describe_target(req, target);

    if (!notice && m.severity &&
        (strcmp(m.severity, "FATAL") == 0 || strcmp(m.severity, "PANIC") == 0)) {
        /* the remote session ended: re-raising its SQLSTATE (57P01, ...)
         * would read as if this session were being terminated */
        relaying_remote = true;
        ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
                        errmsg("lost connection to the remote server"),
                        errdetail_internal("remote %s: %s (SQLSTATE %.5s)", m.severity,
                                           m.message ? m.message : "", m.sqlstate),
                        errcontext("bgw_proxy function %s, %s", req->function_name, where)));
    }

    int level = ERROR;
    if (notice) {
        level = NOTICE;
        if (m.severity && strcmp(m.severity, "WARNING") == 0)
            level = WARNING;
        else if (m.severity && (strcmp(m.severity, "INFO") == 0))
            level = INFO;
        else if (m.severity && (strcmp(m.severity, "DEBUG") == 0 || strcmp(m.severity, "LOG") == 0))
            level = DEBUG1;
    }
    if (req->plproxy_messages && m.message) {
        /* LANGUAGE plproxy: the form PL/Proxy users' log filters know */
        char dbname[kDbnameBuf];
        char *prefixed = psprintf("%s(%d): [%s] REMOTE %s: %s", req->function_name, req->nargs,
                                  target_dbname(req, target, dbname) ? dbname : "",
                                  m.severity ? m.severity : "ERROR", m.message);
        pfree(m.message);
        m.message = prefixed;
    }
    const char *st = m.sqlstate;
    relaying_remote = true;
    ereport(level,
            (errcode(MAKE_SQLSTATE(st[0], st[1], st[2], st[3], st[4])),
             errmsg_internal("%s", m.message ? m.message : "remote error without message"),
             m.detail ? errdetail_internal("%s", m.detail) : 0,
             remote_hint_and_context(req, m, where)));
    relaying_remote = false;
    free_remote(m);
    pfree(where);
}

RequestSlot *call_free_slot(void)
{
    return acquire_slot(call_slot_index());
}

void call_register_exit_hook(void)
{
    if (!exit_hook_registered) {
        before_shmem_exit(exit_hook, 0);
        exit_hook_registered = true;
    }
}

void call_run(const CallRequest *req, const ResultSink *sink)
{
    require_preloaded();
    if (active.slot >= 0 || direct_call_active())
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("bgw_proxy: a proxy function cannot be called while another one of "
                               "this session is running")));
    call_register_exit_hook();

    ErrorContextCallback cb;
    cb.callback = call_error_context;
    cb.arg = const_cast<CallRequest *>(req);
    cb.previous = error_context_stack;
    error_context_stack = &cb;
    relaying_remote = false;

    PG_TRY();
    {
        if (!direct_call_run(req, sink))
            run_call(req, sink);
    }
    PG_CATCH();
    {
        relaying_remote = false;
        direct_call_abandon();
        abandon_active_call();
        PG_RE_THROW();
    }
    PG_END_TRY();
    error_context_stack = cb.previous;
}

/* This backend's RequestSlot (shmem.h). */
int call_slot_index(void)
{
#if PG_VERSION_NUM >= 170000
    int idx = MyProcNumber;
#else
    int idx = MyBackendId - 1;
#endif
    if (idx < 0 || idx >= proxy_shared->nslots)
        ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                        errmsg("bgw_proxy: no request slot for this process")));
    return idx;
}

} // namespace bgw
