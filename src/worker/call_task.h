/*
 * call_task.h — a call as its worker holds it: the slot it came through,
 * its rings, the messages not yet sent back, and one Task per target. A
 * Task is the QuerySink of its target's job: it turns what the pool reports
 * into response messages (slot_protocol.hpp) and counts the job for
 * pg_stat_bgw_proxy.
 *
 * Worker code: C++ objects; PostgreSQL only through pg_call().
 */
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "pool/conn_pool.hpp"
#include "shared/slot_protocol.hpp"
#include "worker/node_router.h"
#include "worker/pool_stats_worker.h"

#include "common/pg_headers.h"

namespace bgw {

struct Call;

/* One target of a call: receives its job's output and encodes it. */
struct Task final : QuerySink {
    Call *call = nullptr;
    uint16 index = 0;
    Job *job = nullptr;              /* the pool's job while it runs; cleared when it ends */
    bool finished = false;
    JobTally tally;                  /* for pg_stat_bgw_proxy */
    /* a multi-host partition's: which node, the retry (node_router.h). A
     * target with a route, not finished and without a job is to be placed
     * on a node (step_call) */
    std::unique_ptr<NodeRoute> route;
    bool described = false;          /* its first result has been posted */

    /* The pool calls these inside its own bookkeeping: nothing is thrown
     * out of them. A failure (out of memory) breaks the call instead
     * (Call::broken): it reads no more, and step_all_calls gives it up,
     * that call alone. */
    bool can_accept() noexcept override;
    void on_describe(const PGresult *res) noexcept override;
    void on_row(const PGresult *row) noexcept override;
    void on_notice(const PGresult *notice) noexcept override;
    void on_error(const PGresult *res, const char *sqlstate, const std::string &message,
                  const std::string &detail) noexcept override;
    void on_done(uint64_t rows) noexcept override;

private:
    template <typename F>
    void guarded(proto::FaultPoint where, F &&fn) noexcept;
};

enum class Phase { Receiving, Running, Finishing };

/* Call::broken when an allocation failed (the call is given up with 53200) */
inline constexpr char kOutOfMemory[] = "out of memory"; /* one address in every file */

struct Call {
    int slot = -1;
    StatBook *stats = nullptr;       /* the worker's */
    NodeRouter *router = nullptr;    /* the worker's */
    MemoryContext cxt = nullptr;     /* the ring handles live here */
    shm_mq_handle *request = nullptr;
    shm_mq_handle *response = nullptr;
    Phase phase = Phase::Receiving;
    bool abandoned = false;          /* backend gone: drop without reply */
    const char *broken = nullptr;    /* a task's callback failed: why (to give the call up) */
    proto::FaultPoint fault = proto::FaultPoint::None; /* bgw_proxy.debug_fault of the caller */
    bool accounted = false;          /* counted as ended (account_end) */
    std::deque<std::string> outbox;  /* encoded messages not yet in the ring */
    size_t outbox_bytes = 0;         /* their size */
    int open_rows = -1;              /* target whose rows message is outbox.back(), or -1 */
    uint32 open_rows_count = 0;      /* rows in it */
    std::vector<std::unique_ptr<Task>> tasks;

    /* Queue a message; a rows message still open is closed first. */
    void post(std::string &&message);
    /* The open rows message (the last of the outbox) takes no more rows:
     * its row count is written. Before a message is sent, it is closed. */
    void close_rows();
    /* The first message was handed to the ring whole. */
    void sent_front();
    /* Messages at the front of the outbox become one batch message (one
     * send, one wake-up of the backend). Not while the first is partly in
     * the ring: shm_mq_send must be given it again unchanged. */
    void pack_front();
    bool front_partial = false;      /* the ring took part of the first message */
    /* A call-level failure for the backend (a request it cannot decode). */
    void fail(const char *message);
};

} // namespace bgw
