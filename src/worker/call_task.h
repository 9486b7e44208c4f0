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
    StatBook *stats = nullptr;       /* the worker's */
    MemoryContext cxt = nullptr;     /* the ring handles live here */
    shm_mq_handle *request = nullptr;
    shm_mq_handle *response = nullptr;
    Phase phase = Phase::Receiving;
    bool abandoned = false;          /* backend gone: drop without reply */
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
