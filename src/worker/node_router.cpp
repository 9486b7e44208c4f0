/*
 * node_router.cpp — see node_router.h.
 */
#include "worker/node_router.h"
#include "common/conninfo.hpp"
#include "shared/shmem.h"
#include "shared/node_table.h"
#include "worker/worker_self.h"

#include "common/pg_headers.h"
#include "common/cxx_boundary.h"

#include <cstring>

namespace bgw {

namespace {

/* pg_is_in_recovery() and, on a standby, the WAL received and not yet
 * replayed (NULL without a WAL receiver: no lag we could measure). */
constexpr char kCheckQuery[] =
    "SELECT pg_catalog.pg_is_in_recovery(), CASE WHEN pg_catalog.pg_is_in_recovery() THEN "
    "pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn()) END";

/* A check connects anew each time (its key: the node's + this), so that
 * a server that stopped accepting connections is seen even while its
 * pooled connections still work; the connection is closed after. */
constexpr char kCheckKeySuffix[] = "\x1e" "check";

/* A worker stops checking the nodes of a partition it has not been called
 * for this long (its configuration changed, or its calls go elsewhere):
 * another worker that calls it checks them. */
constexpr auto kForgetUnused = std::chrono::minutes(10);

uint64_t next_random()
{
    static uint64_t x = 0;
    if (x == 0)
        x = (uint64_t(MyProcPid) << 32) ^ uint64_t(GetCurrentTimestamp()) ^ 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

JobSpec node_spec(const JobSpec &base, const NodeSet::Node &n)
{
    JobSpec s = base;
    s.connstr = n.connstr;
    s.key = base.key + n.key_suffix;
    return s;
}

bool connection_level(const PGresult *res, const char *sqlstate)
{
    if (res) {
        const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
        return sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
    }
    return sqlstate && (strcmp(sqlstate, "08001") == 0 || strcmp(sqlstate, "08006") == 0);
}

std::vector<uint32_t> parse_weights(const wire::Span &w, size_t n)
{
    std::vector<uint32_t> out(n, 1);
    if (w.len == 0)
        return out;
    std::string s(w.data, w.len);
    size_t i = 0;
    const char *p = s.c_str();
    while (*p && i < n) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p)
            break;
        out[i++] = uint32_t(std::min<unsigned long>(v, 1000000));
        p = end;
        while (*p == ' ' || *p == ',')
            p++;
    }
    return out;
}


} // namespace

/* One node's health check: a job on the node's pool key. */
class HealthCheck final : public QuerySink {
public:
    NodeRouter *router = nullptr;
    int entry = -1;
    JobSpec spec;                    /* the check's job (its key: spec.key) */
    /* The login: a check keeps the one it last succeeded with (another
     * role's wrong password must not take the node down for all); after a
     * failure it takes the latest call's, `latest`. */
    JobSpec latest;
    bool proven = false;             /* the last check with spec succeeded */
    uint64_t max_lag = 0;
    int interval_ms = 0, retries = 1;
    Job *job = nullptr;
    bool running = false;
    Clock::time_point last_used;     /* the latest call to the node's partition */
    Clock::time_point backoff_until; /* claims no check before (its login failed, see on_error) */

    bool can_accept() noexcept override { return true; }
    void on_describe(const PGresult *) noexcept override {}
    void on_notice(const PGresult *) noexcept override {}
    void on_row(const PGresult *row) noexcept override
    {
        in_recovery_ = PQnfields(row) > 0 && strcmp(PQgetvalue(row, 0, 0), "t") == 0;
        lag_ = 0;
        if (PQnfields(row) > 1 && !PQgetisnull(row, 0, 1)) {
            double v = strtod(PQgetvalue(row, 0, 1), nullptr);
            lag_ = v > 0 ? uint64_t(v) : 0;
        }
        got_row_ = true;
    }
    void on_done(uint64_t) noexcept override
    {
        end();
        if (!got_row_) {
            proven = false;
            node_record_check(node_entry(entry), false, NODE_ROLE_UNKNOWN, 0, 0, retries, false,
                              "the check query returned no row", fresh_for_us());
            return;
        }
        char text[kNodeText];
        if (in_recovery_)
            snprintf(text, sizeof(text), "standby, replay lag %llu bytes", (unsigned long long) lag_);
        else
            snprintf(text, sizeof(text), "primary");
        proven = ever_proven_ = true;
        node_record_check(node_entry(entry), true, in_recovery_ ? NODE_ROLE_STANDBY : NODE_ROLE_PRIMARY, lag_,
                          max_lag, retries, false, text, fresh_for_us());
    }
    void on_error(const PGresult *res, const char *sqlstate, const std::string &message,
                  const std::string &detail) noexcept override
    {
        end();
        proven = false;
        /* A login this worker never got through with fails while the node
         * is up (other workers' checks say so): it is that login's failure
         * (a role mapped to a user the node does not know), not the
         * node's. Its checks go on, with the next call's login. */
        NodeEntry *e = node_entry(entry);
        uint32 st = node_effective_state(e, node_clock_us());
        if (!ever_proven_ && (st == NODE_UP || st == NODE_LAGGING)) {
            /* the round's check is another worker's to make: give it
             * back, and stay out of the next round */
            pg_atomic_write_u64(&e->next_check, 0);
            backoff_until = Clock::now() + std::chrono::milliseconds(interval_ms);
            return;
        }
        char text[kNodeText];
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
        if (primary)
            snprintf(text, sizeof(text), "%s", primary);
        else
            snprintf(text, sizeof(text), "%s%s%s", message.c_str(), detail.empty() ? "" : ": ", detail.c_str());
        /* could not connect (refused, timed out): down at once */
        bool at_once = !res && sqlstate && strcmp(sqlstate, "08001") == 0;
        node_record_check(node_entry(entry), false, NODE_ROLE_UNKNOWN, 0, 0, retries, at_once, text,
                          fresh_for_us());
    }

    /* How long a check's result holds (node_table.h: fresh_until): two
     * intervals and the time a check may take, and a second to spare. */
    uint64_t fresh_for_us() const
    {
        return (2 * uint64_t(interval_ms) + uint64_t(spec.query_timeout_ms) + 1000) * 1000;
    }

private:
    void end()
    {
        job = nullptr;
        running = false;
        close_pending = true;
        router->check_done();
    }

public:
    bool close_pending = false;      /* its connection is to be closed (outside the pool's callbacks) */

private:
    bool ever_proven_ = false;       /* a check of this worker's has succeeded on the node */
    bool in_recovery_ = false;
    bool got_row_ = false;
    uint64_t lag_ = 0;
};

void NodeRouter::log_untracked(const char *why)
{
    if (untracked_logged_)
        return;
    untracked_logged_ = true;
    pg_call([&] {
        ereport(LOG, (errmsg("bgw_proxy: %s; such a partition is connected to as libpq chooses, without "
                             "health checks",
                             why)));
    });
}

NodeRouter::NodeRouter() = default;
NodeRouter::~NodeRouter() = default;

std::unique_ptr<NodeRoute> NodeRouter::route_for(Oid dbid, const std::string &cluster, uint32_t partition,
                                                 const JobSpec &spec, const proto::Request &q,
                                                 const proto::RequestTarget &tg)
{
    /* a single host needs no comma: the common case costs one scan */
    if (cluster.empty() || spec.connstr.find(',') == std::string::npos)
        return nullptr;
    std::string id = std::to_string(dbid) + '\x1f' + cluster + '\x1f' + std::to_string(partition) + '\x1f' +
                     spec.connstr + '\x1f' + std::string(tg.weights.data, tg.weights.len);
    auto it = sets_.find(id);
    if (it == sets_.end()) {
        auto set = std::make_unique<NodeSet>();
        std::vector<ConninfoHost> hosts = conninfo_split_hosts(spec.connstr);
        if (hosts.size() > size_t(kMaxNodesPerPartition))
            log_untracked("a partition has more than 64 hosts");
        else if (hosts.size() >= 2) {
            std::vector<uint32_t> weights = parse_weights(tg.weights, hosts.size());
            for (size_t i = 0; i < hosts.size(); i++) {
                const ConninfoHost &h = hosts[i];
                NodeSet::Node n;
                n.connstr = h.connstr;
                n.key_suffix = std::string(1, kKeyPartSeparator) + std::to_string(i);
                std::string host = h.host.empty() ? h.hostaddr : h.host;
                std::string port = h.port.empty() ? "5432" : h.port;
                n.label = host + ":" + port;
                n.weight = weights[i];
                n.entry = pg_call([&] {
                    return node_find_or_add(dbid, cluster.c_str(), int(partition), int(i), host.c_str(),
                                            port.c_str());
                });
                if (n.entry < 0) {
                    log_untracked("bgw_proxy.max_nodes is too small to track every node");
                    set->nodes.clear();
                    break;
                }
                set->nodes.push_back(std::move(n));
            }
        }
        it = sets_.emplace(id, std::move(set)).first;
    }
    NodeSet *set = it->second.get();
    if (set->nodes.empty())
        return nullptr;
    set->max_lag = q.max_replica_lag;
    set->interval_ms = int(q.health_check_interval_ms);
    set->timeout_ms = int(q.health_check_timeout_ms);
    set->retries = std::max(1, int(q.health_check_retries));

    Clock::time_point now = Clock::now();
    auto r = std::make_unique<NodeRoute>();
    r->set = set;
    r->base = spec;
    r->read = (q.flags & proto::kFlagRead) != 0;
    r->read_from = q.read_from;

    for (const NodeSet::Node &n : set->nodes) {
        NodeEntry *e = node_entry(n.entry);
        if (pg_atomic_read_u32(&e->weight) != n.weight)
            pg_atomic_write_u32(&e->weight, n.weight);
        std::unique_ptr<HealthCheck> &hc = checks_[n.entry];
        if (!hc) {
            hc = std::make_unique<HealthCheck>();
            hc->router = this;
            hc->entry = n.entry;
            next_scan_ = Clock::now();
        }
        hc->last_used = now;
        std::string key = spec.key + n.key_suffix + kCheckKeySuffix;
        if (hc->latest.key != key) {
            JobSpec c = node_spec(spec, n);
            c.key = key;
            c.max_connections = 1;
            c.query = kCheckQuery;
            c.params.clear();
            c.param_null.clear();
            c.result_types.clear();
            c.prepare = false;
            c.binary_type_ok = nullptr;
            c.stat_ref = -1;
            hc->latest = std::move(c);
        }
        if (!hc->proven && !hc->running && hc->spec.key != hc->latest.key) {
            if (!hc->spec.key.empty())
                self->pool.retire_key(hc->spec.key); /* its connection, if one is left */
            hc->spec = hc->latest;
        }
        int timeout = set->timeout_ms > 0 ? set->timeout_ms : 3000;
        hc->spec.connect_timeout_ms = hc->spec.query_timeout_ms = hc->spec.pool_wait_timeout_ms = timeout;
        hc->max_lag = set->max_lag;
        hc->interval_ms = set->interval_ms > 0 ? set->interval_ms : 5000;
        hc->retries = set->retries;
    }
    return r;
}

bool NodeRouter::place(NodeRoute &r, JobSpec *out, NoNode *why)
{
    const auto &nodes = r.set->nodes;
    std::vector<int> pick;
    std::vector<int> primaries;
    bool unknown = false;
    uint64 clock_us = node_clock_us();
    std::vector<uint32> state(nodes.size());
    for (size_t i = 0; i < nodes.size(); i++) {
        NodeEntry *e = node_entry(nodes[i].entry);
        uint32 st = state[i] = node_effective_state(e, clock_us);
        uint32 role = pg_atomic_read_u32(&e->role);
        if (st == NODE_UNKNOWN && !(r.tried & (1ull << i)))
            unknown = true;
        if (st != NODE_DOWN && st != NODE_UNKNOWN && role == NODE_ROLE_PRIMARY)
            primaries.push_back(int(i));
    }
    /* nodes never checked yet: wait for their first check, once, for at
     * most the check's timeout */
    Clock::time_point now = Clock::now();
    bool may_wait = false;
    if (unknown) {
        if (r.wait_until == Clock::time_point::max()) {
            int timeout = r.set->timeout_ms > 0 ? r.set->timeout_ms : 3000;
            r.wait_until = now + std::chrono::milliseconds(timeout + 100);
        }
        may_wait = now < r.wait_until;
    }
    auto wait = [&] {
        why->sqlstate = "";
        next_scan_ = std::min(next_scan_, r.wait_until);
        return false;
    };
    int chosen = -1;
    if (!r.read) {
        if (primaries.size() >= 2) {
            why->sqlstate = "55000";
            why->message = std::string("partition has two primaries: ") + nodes[size_t(primaries[0])].label +
                           " and " + nodes[size_t(primaries[1])].label;
            why->detail = "Writes to the partition fail until only one of its nodes is primary; reads go on.";
            return false;
        }
        /* a write waits until every node's role is known: the one not
         * checked yet may be a second primary */
        if (may_wait)
            return wait();
        if (primaries.size() == 1 && !(r.tried & (1ull << primaries[0])))
            chosen = primaries[0];
    } else {
        std::vector<int> standbys, all;
        for (size_t i = 0; i < nodes.size(); i++) {
            if (r.tried & (1ull << i) || nodes[i].weight == 0)
                continue;
            NodeEntry *e = node_entry(nodes[i].entry);
            if (state[i] != NODE_UP)
                continue;
            all.push_back(int(i));
            if (pg_atomic_read_u32(&e->role) == NODE_ROLE_STANDBY)
                standbys.push_back(int(i));
        }
        std::vector<int> usable_primaries;
        for (int i : primaries)
            if (!(r.tried & (1ull << i)) && nodes[size_t(i)].weight > 0)
                usable_primaries.push_back(i);
        switch (r.read_from) {
        case proto::ReadFrom::Any:
            pick = all;
            break;
        case proto::ReadFrom::Standby:
            pick = standbys.empty() ? usable_primaries : standbys;
            break;
        case proto::ReadFrom::Primary:
            pick = usable_primaries;
            break;
        }
        uint64_t total = 0;
        for (int i : pick)
            total += nodes[size_t(i)].weight;
        if (total > 0) {
            uint64_t x = next_random() % total;
            for (int i : pick) {
                if (x < nodes[size_t(i)].weight) {
                    chosen = i;
                    break;
                }
                x -= nodes[size_t(i)].weight;
            }
        }
    }
    if (chosen >= 0) {
        const NodeSet::Node &n = nodes[size_t(chosen)];
        r.node = chosen;
        r.tried |= 1ull << chosen;
        *out = node_spec(r.base, n);
        pg_atomic_fetch_add_u64(&node_entry(n.entry)->calls, 1);
        return true;
    }
    if (may_wait)
        return wait();
    why->sqlstate = "08001";
    why->message = r.read ? "no node of the partition can take a read" : "no primary node of the partition is up";
    std::string d = "Nodes:";
    for (size_t i = 0; i < nodes.size(); i++) {
        uint32_t role = pg_atomic_read_u32(&node_entry(nodes[i].entry)->role);
        d += std::string(i ? ", " : " ") + nodes[i].label + " (" + node_role_name(role) + ", " +
             node_state_name(state[i]) + ")";
    }
    d += ".";
    if (!r.first_failure.empty())
        d += " The call failed on " + r.first_failure;
    why->detail = d;
    return false;
}

bool NodeRouter::failed(NodeRoute &r, bool described, const PGresult *res, const char *sqlstate,
                        const std::string &message, const std::string &detail) noexcept
{
    if (r.node < 0)
        return false;
    try {
        NodeEntry *e = node_entry(r.set->nodes[size_t(r.node)].entry);
        pg_atomic_fetch_add_u64(&e->errors, 1);
        bool never_sent = !res && sqlstate && strcmp(sqlstate, "08001") == 0;
        bool conn = connection_level(res, sqlstate);
        std::string text = message + (detail.empty() ? "" : ": " + detail);
        if (conn) {
            node_record_failure(e, text.c_str());
            next_scan_ = Clock::now();
        }
        bool retry = !r.retried && (never_sent || (r.read && !described && conn));
        if (!retry)
            return false;
        r.retried = true;
        r.first_failure = r.set->nodes[size_t(r.node)].label + ": " + text;
        r.node = -1;
        pg_atomic_fetch_add_u64(&e->retries, 1);
        return true;
    } catch (...) {
        return false;
    }
}

void NodeRouter::on_timer(Clock::time_point now)
{
    if (now < next_scan_)
        return;
    Clock::time_point next = now + std::chrono::seconds(1);
    uint64 ts = node_clock_us();
    for (auto it = checks_.begin(); it != checks_.end();) {
        int entry = it->first;
        HealthCheck *hc = it->second.get();
        if (hc->running || hc->spec.key.empty()) {
            ++it;
            continue;
        }
        if (hc->close_pending) {
            hc->close_pending = false;
            self->pool.retire_key(hc->spec.key);
        }
        if (now - hc->last_used > kForgetUnused) {
            it = checks_.erase(it); /* the partition is no longer called (here) */
            continue;
        }
        ++it;
        if (now < hc->backoff_until) {
            next = std::min(next, hc->backoff_until);
            continue;
        }
        NodeEntry *e = node_entry(entry);
        uint64 due = pg_atomic_read_u64(&e->next_check);
        if (ts < due) {
            next = std::min(next, now + std::chrono::microseconds(due - ts));
            continue;
        }
        uint64 until = ts + uint64(hc->interval_ms) * 1000;
        if (!pg_atomic_compare_exchange_u64(&e->next_check, &due, until))
            continue; /* another worker took it */
        hc->running = true;
        try {
            self->pool.submit(hc->spec, hc, &hc->job);
        } catch (...) {
            hc->running = false; /* the pool did not take it (out of memory) */
            throw;
        }
    }
    next_scan_ = std::max(next, now + std::chrono::milliseconds(10));
}

} // namespace bgw
