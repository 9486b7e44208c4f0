/*
 * pool_stats_worker.h — a worker's side of pg_stat_bgw_proxy: it claims
 * the entries of its region for the (database, cluster, partition, role,
 * remote user) it serves, counts what their jobs do, and publishes the
 * gauges of the pools behind them. Contract of the entries: pool_stats.h.
 *
 * Declared without PostgreSQL headers (Oid is a uint32_t here) so the
 * worker can include it with its other C++ headers. Lives in the worker
 * only; methods never raise a PostgreSQL error; job_starting may throw
 * bad_alloc like any other step of starting a call, the others do not
 * throw.
 */
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "pool/conn_pool.hpp"

namespace bgw {

enum class JobOutcome { Done, Failed, Cancelled };

/* Who calls which partition as whom: "dbid roleid cluster partition
 * remote-user". Built once per target of a call; the statistics entry and
 * the worker's configuration tracking are both keyed by it. */
std::string partition_caller(uint32_t dbid, uint32_t roleid, const std::string &cluster, uint32_t partition,
                             const std::string &remote_user);

/* What one target of a call has done so far, for its entry. */
struct JobTally {
    int64_t stat_ref = -1;       /* from job_starting; -1: not tracked */
    bool ended = false;          /* job_ended ran: it never counts twice */
    Clock::time_point started;
    uint64_t rows = 0;
    uint64_t bytes_received = 0;
    bool binary = false;         /* its results came in binary */
};

class StatBook final : public PoolObserver {
public:
    /* Take over this worker's region: entries a previous incarnation
     * claimed are kept (their counters too), their gauges zeroed. */
    void start(int worker);

    /* The entry for a job, claimed if new: a reference for JobSpec::stat_ref
     * and JobTally, or -1 when the region is full of entries still in use.
     * Counts the job as started (bytes sent). */
    int64_t job_starting(const std::string &caller, uint32_t dbid, uint32_t roleid, const std::string &cluster,
                         uint32_t partition, const JobSpec &spec, const Pool &pool);
    /* Count the job's end, once; `error` is the text for last_error. */
    void job_ended(JobTally &t, JobOutcome outcome, const char *error = nullptr);

    void connected(int64_t stat_ref) override;
    /* counts it, and logs why (DEBUG1) */
    void disconnected(int64_t stat_ref, const char *reason) override;

    /* Write the gauges of the entries whose pools exist, zero those whose
     * pools are gone. Cost: the pool's keys and connections. */
    void publish(const Pool &pool);
    /* At exit: no connections, nobody waiting. */
    void zero_gauges();

private:
    struct Local {
        std::string identity;    /* empty: entry unused */
        std::string pool_key;    /* the pool its last job used */
        std::string connstr;     /* raw, to notice a change */
        int active_jobs = 0;
        uint32_t generation = 0; /* +1 at every claim: refs to an earlier use are stale */
        Clock::time_point last_used;
        bool gauges_nonzero = false;
        uint64_t published = 0;  /* publish round that last wrote its gauges */
    };
    int claim(const std::string &identity, const Pool &pool);
    void set_conninfo(int i, const JobSpec &spec);
    void bind_key(int i, const std::string &key);
    Local *resolve(int64_t stat_ref, int *index);

    int first_ = 0;              /* our region in the shared array */
    std::vector<Local> local_;
    std::unordered_map<std::string, int> by_identity_;
    std::unordered_map<std::string, std::vector<int>> by_key_; /* pool key -> entries */
    std::vector<int> nonzero_;   /* entries whose shared gauges are not all zero */
    uint64_t round_ = 0;
    Clock::time_point full_until_; /* the region was full: do not search again before */
    bool full_logged_ = false;
};

} // namespace bgw
