/*
 * slot_calls.cpp — see slot_calls.h.
 */
#include "worker/slot_calls.h"
#include "common/pool_key.hpp"
#include "shared/binary_types.hpp"
#include "shared/slot_protocol.hpp"
#include "shared/workers.h"
#include "worker/gauges.h"
#include "worker/retirement.h"
#include "worker/worker_self.h"

#include "common/pg_headers.h"
#include "common/cxx_boundary.h"

#include <cstring>

namespace bgw {

namespace {

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
    uncharge_worker(request_slot(c.slot));
}

/* Give the slot back: the worker never touches it again after DONE.
 * The rings are not detached: detaching would set the backend's latch for
 * nothing (it learns the end from the final message, or already left);
 * deleting the call's context frees the handles. */
void release_slot(Call &c)
{
    if (!c.accounted) {
        /* ended without its final message: counted (and published) now */
        account_end(c);
        gauges_touched();
        gauges_publish(true);
    }
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

/* What the pool needs to run one target of a request. */
JobSpec job_spec(const proto::Request &q, const proto::RequestTarget &tg, Oid roleid)
{
    auto str = [](const wire::Span &s) { return std::string(s.data, s.len); };
    JobSpec spec;
    spec.connstr = str(tg.connstr);
    spec.user = str(tg.user);
    spec.password = str(tg.password);
    spec.require_password = tg.require_password;
    spec.encoding = str(tg.encoding);
    append_pool_key(spec.key, spec.connstr.data(), spec.connstr.size(), spec.user.data(), spec.user.size(),
                    spec.password.data(), spec.password.size(), spec.encoding.c_str(), roleid,
                    spec.require_password);
    spec.connect_timeout_ms = int(q.connect_timeout_ms);
    spec.query_timeout_ms = int(q.query_timeout_ms);
    spec.prepare = (q.flags & proto::kFlagPrepare) != 0;
    spec.binary_type_ok = (q.flags & proto::kFlagNoBinary) == 0 ? binary_safe_type : nullptr;
    for (uint16 i = 0; i < q.ncolumns; i++)
        spec.result_types.push_back(ResultColumn{str(q.columns[i].name), q.columns[i].type});
    spec.max_connections = int(q.max_connections);
    spec.lifetime_s = int(q.connection_lifetime_s);
    spec.pool_wait_timeout_ms = int(q.pool_wait_timeout_ms);
    spec.query = str(q.query);
    spec.params.resize(tg.nparams);
    spec.param_null.resize(tg.nparams);
    for (uint32 i = 0; i < tg.nparams; i++) {
        spec.param_null[i] = tg.params[i].is_null;
        if (!tg.params[i].is_null)
            spec.params[i] = str(tg.params[i]);
    }
    return spec;
}

/* A target of a multi-host partition that has no job yet: its job goes to
 * a node, or it waits for the nodes' first checks, or it fails. */
void place_on_node(Task &t)
{
    JobSpec spec;
    NoNode why;
    if (self->router.place(*t.route, &spec, &why)) {
        self->pool.submit(std::move(spec), &t, &t.job);
        return;
    }
    if (why.sqlstate[0])
        t.on_error(nullptr, why.sqlstate, why.message, why.detail);
}

/* The request has arrived: one task and one job per target. */
void start_call(Call &c, const char *data, Size len)
{
    proto::Request q;
    proto::RequestStorage storage;
    if (!proto::decode_request(data, len, q, storage)) {
        /* a bug, but only this call pays */
        c.fail("bgw_proxy: malformed request");
        return;
    }
    RequestSlot *s = request_slot(c.slot);
    std::vector<JobSpec> specs;
    specs.reserve(q.ntargets);
    for (uint32 i = 0; i < q.ntargets; i++)
        specs.push_back(job_spec(q, q.targets[i], s->roleid));
    c.phase = Phase::Running;
    c.fault = proto::fault_of(q.flags);
    for (uint32 i = 0; i < q.ntargets; i++) {
        auto t = std::make_unique<Task>();
        t->call = &c;
        t->index = uint16(i);
        c.tasks.push_back(std::move(t));
    }
    std::string cluster(q.cluster.data, q.cluster.len);
    for (uint32 i = 0; i < q.ntargets; i++) {
        uint32 partition = q.targets[i].partition;
        std::string caller = partition_caller(s->dbid, s->roleid, cluster, partition, specs[i].user);
        if (!cluster.empty())
            retire_on_config_change(caller, cluster, partition, specs[i], q.config_version);
        Task *t = c.tasks[i].get();
        specs[i].stat_ref = self->stats.job_starting(caller, s->dbid, s->roleid, cluster, partition, specs[i],
                                                    self->pool);
        t->tally.stat_ref = specs[i].stat_ref;
        t->tally.started = Clock::now();
    }
    /* a multi-host partition's target runs on one of its nodes */
    for (uint32 i = 0; i < q.ntargets; i++)
        c.tasks[i]->route = self->router.route_for(s->dbid, cluster, q.targets[i].partition, specs[i], q,
                                                   q.targets[i]);
    /* tasks are all in place before any job can report to them */
    for (uint32 i = 0; i < q.ntargets; i++) {
        Task *t = c.tasks[i].get();
        if (t->route)
            place_on_node(*t); /* now, or on a later turn */
        else
            self->pool.submit(std::move(specs[i]), t, &t->job);
    }
}

/* Become the response ring's sender: at the first message, so the latch
 * the naming sets comes with something to read (see shmem.h). */
void attach_response(Call &c)
{
    pg_call([&] {
        MemoryContext old = MemoryContextSwitchTo(c.cxt);
        auto *resp = static_cast<shm_mq *>(slot_response_ring(c.slot));
        shm_mq_set_sender(resp, MyProc);
        c.response = shm_mq_attach(resp, nullptr, nullptr);
        MemoryContextSwitchTo(old);
    });
}

/* Move encoded messages into the response ring until it is full. A message
 * the ring took in part is sent again, unchanged, next time: so the open
 * rows message is closed before it is first offered. */
void flush_outbox(Call &c)
{
    if (!c.outbox.empty() && !c.response && !c.abandoned)
        attach_response(c);
    while (!c.outbox.empty() && !c.abandoned) {
        if (c.outbox.size() == 1 && !c.front_partial)
            c.close_rows();
        c.pack_front();
        const std::string &m = c.outbox.front();
        shm_mq_result r = pg_call([&] {
            bool last = c.outbox.size() == 1;
            return shm_mq_send(c.response, m.size(), m.data(), true, last);
        });
        c.front_partial = r == SHM_MQ_WOULD_BLOCK;
        if (r == SHM_MQ_WOULD_BLOCK)
            return;
        if (r == SHM_MQ_DETACHED) {
            c.abandoned = true;
            return;
        }
        c.sent_front();
    }
}

void receive_request(Call &c)
{
    RequestSlot *s = request_slot(c.slot);
    if (s->request_len > 0) {
        /* a plain request in the request area (shmem.h): ours while RUNNING */
        start_call(c, static_cast<const char *>(slot_request_ring(c.slot)), s->request_len);
        return;
    }
    Size len;
    void *data;
    shm_mq_result r = pg_call([&] { return shm_mq_receive(c.request, &len, &data, true); });
    if (r == SHM_MQ_SUCCESS)
        start_call(c, static_cast<const char *>(data), len);
    else if (r == SHM_MQ_DETACHED)
        c.abandoned = true;
}

/* All targets have ended: say so, and the call is finishing. */
void finish_if_all_done(Call &c)
{
    for (auto &t : c.tasks)
        if (!t->finished)
            return;
    account_end(c);
    /* gauges first: a session that has seen its call end sees them too */
    gauges_touched();
    gauges_publish(true);
    std::string b;
    proto::encode_call_done(b);
    c.post(std::move(b));
    c.phase = Phase::Finishing;
    flush_outbox(c);
}

/* Advance one call as far as it can go without waiting. True when done. */
bool step_call(Call &c)
{
    RequestSlot *s = request_slot(c.slot);
    if (pg_atomic_read_u32(&s->cancel) != 0)
        c.abandoned = true;
    if (!c.abandoned && c.phase == Phase::Receiving)
        receive_request(c);
    if (c.abandoned) {
        abandon_jobs(c);
        c.outbox.clear();
        release_slot(c);
        return true;
    }

    /* a call whose targets have all ended is accounted (and its gauges
     * published) before its last messages go out: a backend raises an
     * Error as soon as it reads it, and its session then sees the ended
     * call in the views (an Error while other targets still run goes out
     * at once; that call is accounted when it is given up) */
    if (c.phase == Phase::Running) {
        for (auto &t : c.tasks)
            if (t->route && !t->finished && !t->job)
                place_on_node(*t);
        finish_if_all_done(c);
    }
    bool was_full = !c.tasks.empty() && !c.tasks.front()->can_accept();
    flush_outbox(c);
    if (was_full && c.tasks.front()->can_accept())
        for (auto &t : c.tasks)
            if (t->job)
                self->pool.resume(t->job);
    if (c.phase == Phase::Finishing && c.outbox.empty() && !c.abandoned) {
        release_slot(c);
        return true;
    }
    return false;
}

} // namespace

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
    s->gave_up = 0;
    pg_atomic_fetch_add_u64(&proxy_shared->picked_up, 1);

    auto call = std::make_unique<Call>();
    call->slot = int(t.slot);
    call->stats = &self->stats;
    call->router = &self->router;
    bool plain = s->request_len > 0;
    pg_call([&] {
        call->cxt = AllocSetContextCreate(TopMemoryContext, "bgw_proxy call", ALLOCSET_SMALL_SIZES);
        if (plain)
            return;
        MemoryContext old = MemoryContextSwitchTo(call->cxt);
        auto *req = static_cast<shm_mq *>(slot_request_ring(call->slot));
        shm_mq_set_receiver(req, MyProc);
        call->request = shm_mq_attach(req, nullptr, nullptr);
        MemoryContextSwitchTo(old);
    });
    self->calls.push_back(std::move(call));
    pg_atomic_fetch_add_u32(&self->state->in_flight, 1);
}

/* One call's failure (out of memory, a message too large for the ring...)
 * must not take the others down with the worker: that call alone is given
 * up. Its remote statements are cancelled, and the backend learns why from
 * the slot (RequestSlot.gave_up). */
bool give_up(Call &c, const char *why, int sqlstate)
{
    try {
        abandon_jobs(c, JobOutcome::Failed, why);
    } catch (...) {
        /* still out of memory: the pool may still hold a job whose sink is
         * one of this call's tasks, so the call cannot go yet; it is given
         * up again on the next turn */
        if (!c.broken)
            c.broken = kOutOfMemory;
        return false;
    }
    c.outbox.clear();
    request_slot(c.slot)->gave_up = sqlstate;
    release_slot(c);
    pg_call([&] { ereport(LOG, (errmsg("bgw_proxy worker %d gave up a call: %s", self->index, why))); });
    return true;
}

void step_all_calls()
{
    auto &calls = self->calls;
    for (size_t i = 0; i < calls.size();) {
        Call &c = *calls[i];
        bool done = false;
        char why[256] = {0};
        int sqlstate = ERRCODE_INTERNAL_ERROR;
        try {
            if (c.broken) {
                strlcpy(why, c.broken, sizeof(why));
                if (c.broken == kOutOfMemory)
                    sqlstate = ERRCODE_OUT_OF_MEMORY;
            } else {
                done = step_call(c);
            }
        } catch (const std::bad_alloc &) {
            strlcpy(why, kOutOfMemory, sizeof(why));
            sqlstate = ERRCODE_OUT_OF_MEMORY;
        } catch (const std::exception &e) {
            strlcpy(why, e.what(), sizeof(why));
        }
        if (why[0])
            done = give_up(c, why, sqlstate);
        if (done)
            calls.erase(calls.begin() + long(i));
        else
            i++;
    }
}

void fail_calls_at_exit()
{
    for (auto &c : self->calls) {
        c->abandoned = true;
        account_end(*c);
        for (auto &t : c->tasks)
            self->stats.job_ended(t->tally, JobOutcome::Failed, "bgw_proxy worker exited during the call");
        RequestSlot *s = request_slot(c->slot);
        if (c->request)
            shm_mq_detach(c->request);
        if (!c->response && c->cxt) {
            /* nothing sent yet: name ourselves, so detaching tells the backend */
            auto *resp = static_cast<shm_mq *>(slot_response_ring(c->slot));
            shm_mq_set_sender(resp, MyProc);
            MemoryContext old = MemoryContextSwitchTo(c->cxt);
            c->response = shm_mq_attach(resp, nullptr, nullptr);
            MemoryContextSwitchTo(old);
        }
        if (c->response)
            shm_mq_detach(c->response);
        c->request = c->response = nullptr;
        set_done_and_wake(s);
    }
    self->calls.clear();
}

void reclaim_orphaned_slots()
{
    for (int i = 0; i < proxy_shared->nslots; i++) {
        RequestSlot *s = request_slot(i);
        if (s->worker == self->index && pg_atomic_read_u32(&s->state) == SLOT_RUNNING &&
            s->worker_incarnation != self->incarnation) {
            pg_atomic_fetch_add_u64(&proxy_shared->completed, 1);
            uncharge_worker(s);
            set_done_and_wake(s);
        }
    }
}

} // namespace bgw
