/*
 * guc.cpp — definitions of bgw_proxy's configuration parameters.
 *
 * Sizes of shared memory and of the worker pool can only change at server
 * start (PGC_POSTMASTER). Timeouts and pool limits are read by the workers
 * and backends on every call, so a reload (SIGHUP) is enough.
 */
#include "common/guc.h"

#include "common/pg_headers.h"

namespace bgw {

int guc_workers = 2;
int guc_debug_wait_channels = 1024;
int guc_request_buffer_kb = 16;
int guc_response_buffer_kb = 64;
int guc_max_clusters = 64;
int guc_max_tracked_pools = 1000;
int guc_max_nodes = 256;
int guc_health_check_interval_ms = 5000;
int guc_health_check_timeout_ms = 3000;
int guc_health_check_retries = 3;
int guc_connect_timeout_ms = 10000;
int guc_query_timeout_ms = 0;
int guc_worker_wait_timeout_ms = 10000;
int guc_pool_wait_timeout_ms = 30000;
int guc_idle_timeout_s = 300;
int guc_max_pool_connections = 2;
bool guc_remote_prepare = true;
bool guc_direct_calls = true;
int guc_debug_fault = 0;

namespace {
/* the values are proto::FaultPoint's */
const struct config_enum_entry debug_fault_options[] = {
    {"none", 0, false},       {"alloc_on_describe", 1, false}, {"alloc_on_row", 2, false},
    {"alloc_on_done", 3, false}, {"alloc_on_error", 4, false}, {nullptr, 0, false},
};
} // namespace
bool guc_mapping_password_required = true;

void define_gucs(void)
{
    DefineCustomIntVariable(
        "bgw_proxy.workers", "Number of background workers that hold remote connections.",
        "Every worker serves every pool (connection string and role) with connections of its own; "
        "more workers spread the calls over more processes.",
        &guc_workers, 2, 1, 64, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.request_buffer_size",
        "Size of each backend's ring buffer for sending a call to a worker.",
        "Larger calls still work; they are streamed through the ring in pieces.",
        &guc_request_buffer_kb, 16, 4, 1024 * 1024, PGC_POSTMASTER, GUC_UNIT_KB, nullptr, nullptr,
        nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.response_buffer_size",
        "Size of each backend's ring buffer for rows coming back from a worker.",
        "Results of any size are streamed through it; a larger ring means fewer wake-ups.",
        &guc_response_buffer_kb, 64, 4, 1024 * 1024, PGC_POSTMASTER, GUC_UNIT_KB, nullptr, nullptr,
        nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.max_nodes",
        "Number of nodes (hosts of multi-host partitions) whose health is tracked in shared memory.",
        "A partition whose nodes do not all fit is connected to as libpq chooses, without health checks.",
        &guc_max_nodes, 256, 0, 100000, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.health_check_interval",
        "How often a worker checks each node of a multi-host partition.",
        "The cluster option health_check_interval overrides it.",
        &guc_health_check_interval_ms, 5000, 100, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
        nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.health_check_timeout",
        "How long a health check of a node may take, connecting included.",
        "A check that takes longer has failed. The cluster option health_check_timeout overrides it.",
        &guc_health_check_timeout_ms, 3000, 100, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
        nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.health_check_retries",
        "Failed health checks in a row after which a node is marked down.",
        "A refused or timed-out connection marks it down at once. The cluster option "
        "health_check_retries overrides it.",
        &guc_health_check_retries, 3, 1, 100, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.max_clusters",
        "Cluster configurations kept in the shared cache.",
        "Each slot holds one cluster of one database (up to 16kB of partitions and options); "
        "backends take a cluster from there instead of calling the configuration functions again.",
        &guc_max_clusters, 64, 0, 10000, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.max_tracked_pools",
        "Pools (database, cluster, partition, role) tracked in pg_stat_bgw_proxy.",
        "Split evenly between the workers. When a worker's share is full, the pool it used least "
        "recently and that has no connection is forgotten to make room; if there is none, the new "
        "pool is served but not shown.",
        &guc_max_tracked_pools, 1000, 0, 100000, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.connect_timeout", "Maximum time to establish a remote connection.",
        "0 means no limit.", &guc_connect_timeout_ms, 10000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
        nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.query_timeout", "Maximum time a remote call may run before its connection is closed.",
        "0 means no limit.", &guc_query_timeout_ms, 0, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
        nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.worker_wait_timeout",
        "How long a call waits for a worker that is not running, or for its request slot to be "
        "released by a previous cancelled call.",
        nullptr, &guc_worker_wait_timeout_ms, 10000, 100, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
        nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.pool_wait_timeout",
        "How long a call waits for a connection of a pool that is at its limit, or for a paused cluster.",
        "0 means as long as it takes (until statement_timeout or a cancel).",
        &guc_pool_wait_timeout_ms, 30000, 0, INT_MAX, PGC_SUSET, GUC_UNIT_MS, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.idle_timeout", "Idle pooled connections are closed after this long.",
        "0 means never.", &guc_idle_timeout_s, 300, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_S, nullptr,
        nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.max_pool_connections",
        "Maximum remote connections per pool (connection string and role) in each worker.",
        "Calls beyond it wait for a connection of the pool to become idle. A pool holds at most "
        "bgw_proxy.workers times this many connections in all.",
        &guc_max_pool_connections, 2, 1, 10000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

    DefineCustomBoolVariable(
        "bgw_proxy.remote_prepare",
        "Runs remote queries as prepared statements of the pooled connection.",
        "Spares the remote server parsing and planning on every call. A connection through a "
        "transaction-mode pooler that loses prepared statements is detected and falls back to "
        "plain queries by itself.",
        &guc_remote_prepare, true, PGC_SUSET, 0, nullptr, nullptr, nullptr);

    DefineCustomBoolVariable(
        "bgw_proxy.direct_calls",
        "Lets a call run on idle pooled connections borrowed from the workers, one per target.",
        "The backend then sends the statement and reads its rows itself, on copies of the "
        "workers' sockets: no worker wake-up on the way. Calls to multi-host partitions, over "
        "TLS or GSS-encrypted connections, RUN ON ALL with partial_results, or when a target's "
        "pool has no idle connection parked, go through a worker as before.",
        &guc_direct_calls, true, PGC_USERSET, 0, nullptr, nullptr, nullptr);

    DefineCustomEnumVariable(
        "bgw_proxy.debug_fault",
        "Makes the worker fail this session's calls with an injected allocation failure (for tests).",
        "The worker raises out of memory where a call's results are handled (describe, row, done "
        "or error of each target), to prove that only that call fails: the worker goes on serving "
        "every other call. Never set it in production.",
        &guc_debug_fault, 0, debug_fault_options, PGC_SUSET, GUC_NOT_IN_SAMPLE, nullptr, nullptr, nullptr);

    DefineCustomIntVariable(
        "bgw_proxy.debug_wait_channels",
        "Number of channels the backends waiting for a pooled connection sleep on (for tests).",
        "Each pool waits on one channel, chosen by its key's hash; pools that share a channel are "
        "woken together. A test sets 1 so that every pool shares it. Leave it at its default.",
        &guc_debug_wait_channels, 1024, 1, 65536, PGC_POSTMASTER, GUC_NOT_IN_SAMPLE, nullptr, nullptr,
        nullptr);

    DefineCustomBoolVariable(
        "bgw_proxy.mapping_password_required",
        "Non-superusers whose user mapping names another remote user must give its password.",
        "As in postgres_fdw: any role with USAGE on a cluster can create its own user mapping, so "
        "without this check it could connect as any remote user the remote trusts. PL/Proxy does not "
        "check; turn it off only where the remotes authenticate such connections themselves.",
        &guc_mapping_password_required, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);

    MarkGUCPrefixReserved("bgw_proxy");
}

} // namespace bgw
