/*
 * retirement.h — when the worker retires pooled connections because what
 * they were made for changed: a cluster's configuration, a database that
 * is being dropped, or an administrator asked (bgw_proxy_reconnect and
 * bgw_proxy_resume retire a cluster's connections, bgw_proxy_disconnect_idle
 * closes idle ones). The pool closes them once idle.
 */
#pragma once

#include "pool/conn_pool.hpp"

#include <string>

namespace bgw {

/* A call of `caller` (partition_caller()) to that cluster and partition
 * arrives with this spec and configuration version (-1: SQL/MED). */
void retire_on_config_change(const std::string &caller, const std::string &cluster, uint32_t partition,
                             const JobSpec &spec, int64_t version);

/* DROP DATABASE announced in shared memory since we last looked. */
void retire_for_dropped_database();

/* Pool commands (bgw_proxy_reconnect, _resume, _disconnect_idle) posted
 * since we last looked, carried out and acknowledged (shmem.h). */
void serve_pool_commands();

} // namespace bgw
