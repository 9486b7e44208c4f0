/*
 * guc.h — bgw_proxy's configuration parameters. Defined in guc.cpp, where
 * each one is documented; README.md lists them for users.
 */
#pragma once

namespace bgw {

/* postmaster context: they size shared memory or the worker pool */
extern int guc_workers;
extern int guc_debug_wait_channels;
extern int guc_request_buffer_kb;
extern int guc_response_buffer_kb;
extern int guc_max_clusters;
extern int guc_max_tracked_pools;
extern int guc_max_nodes;

/* sighup context */
extern int guc_connect_timeout_ms;
extern int guc_query_timeout_ms;
extern int guc_worker_wait_timeout_ms;
extern int guc_pool_wait_timeout_ms;
extern int guc_idle_timeout_s;
extern int guc_max_pool_connections;
extern bool guc_remote_prepare;
extern bool guc_direct_calls;
extern int guc_debug_fault;
extern bool guc_mapping_password_required;
extern int guc_health_check_interval_ms;
extern int guc_health_check_timeout_ms;
extern int guc_health_check_retries;

void define_gucs(void);

} // namespace bgw
