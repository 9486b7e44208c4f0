/*
 * retirement.h — when the worker retires pooled connections because what
 * they were made for changed: a cluster's configuration, or a database that
 * is being dropped. The pool closes them once idle.
 */
#pragma once

#include "pool/conn_pool.hpp"

#include <string>

namespace bgw {

/* A call of `caller` (partition_caller()) arrives with this spec and
 * configuration version (-1: SQL/MED or CONNECT). */
void retire_on_config_change(const std::string &caller, const JobSpec &spec, int64_t version);

/* DROP DATABASE announced in shared memory since we last looked. */
void retire_for_dropped_database();

} // namespace bgw
