/*
 * pool_stats_worker.h — a worker's side of pg_stat_bgw_proxy: it claims
 * the entries of its region for the (database, cluster, partition, role)
 * it serves, counts what their jobs do, and publishes the gauges of the
 * pools behind them. Contract of the entries: pool_stats.h.
 *
 * Declared without PostgreSQL headers (Oid is a uint32_t here) so the
 * worker can include it with its other C++ headers. Lives in the worker only; methods never raise a PostgreSQL error and
 * never throw once an entry is found (lookup may throw bad_alloc, like any
 * other step of starting a call).
 */
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "conn_pool.hpp"

namespace bgw {

enum class JobOutcome { Done, Failed, Cancelled };

/* What one target of a call has done so far, for its entry. */
struct JobTally {
    int stat_id = -1;
    Clock::time_point started;
    uint64_t rows = 0;
    uint64_t bytes_received = 0;
};

class StatBook final : public PoolObserver {
public:
    /* Take over this worker's region: entries a previous incarnation
     * claimed are kept (their counters too), their gauges zeroed. */
    void start(int worker);

    /* The entry for a job, claimed if new; -1 when the region is full of
     * entries still in use. Counts the job as started (bytes sent). */
    int job_starting(uint32_t dbid, uint32_t roleid, const std::string &cluster, uint32_t partition, const JobSpec &spec,
                     const Pool &pool);
    void job_ended(const JobTally &t, JobOutcome outcome, const char *error);

    void connected(int stat_id) override;
    void disconnected(int stat_id) override;

    /* Write the gauges of every entry whose pool changed. */
    void publish(const Pool &pool);
    /* At exit: no connections, nobody waiting. */
    void zero_gauges();

private:
    struct Local {
        std::string identity;    /* empty: entry unused */
        std::string pool_key;    /* the pool its last job used */
        std::string connstr;     /* raw, to notice a change */
        std::string user;
        int active_jobs = 0;
        Clock::time_point last_used;
        bool gauges_nonzero = false;
    };
    int claim(const std::string &identity, const Pool &pool);
    void set_conninfo(int i, const JobSpec &spec);

    int first_ = 0;              /* our region in the shared array */
    std::vector<Local> local_;
    std::unordered_map<std::string, int> by_identity_;
    bool full_logged_ = false;
};

} // namespace bgw
