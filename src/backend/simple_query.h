/*
 * simple_query.h — a kept SPI plan whose query is one expression (SELECT
 * expr: no FROM, no set-returning function, no subquery), evaluated
 * without the executor.
 *
 * RUN ON hashtext(k::text) and plproxy.get_cluster_version($1) run on
 * every call; through SPI each costs a query's executor start, run and end
 * (memory contexts, a result tuple store). Evaluating the plan's one
 * expression gives the same value, with the same snapshot rules as
 * SPI_execute_plan(read_only = false) and the same error context.
 */
#pragma once

#include "common/pg_headers.h"

extern "C" {
#include "executor/spi.h"
}

namespace bgw {

/*
 * Evaluate `plan` (prepared and kept by SPI, with nparams parameters of
 * `types`; nulls as SPI's: 'n' or ' ') for one value: true with *value
 * (copied into the current memory context), *isnull and *type, or false
 * when the plan is not one expression, or not of want_type when that is
 * given (then nothing ran: use SPI, and *not_simple is set, so the caller
 * does not look at this plan again).
 * `query` is the plan's text, for errors. Errors of the expression
 * propagate (ereport). Unlike SPI, no executor hooks see it (e.g.
 * pg_stat_statements' nested statements).
 */
bool simple_query_eval(SPIPlanPtr plan, const char *query, bool *not_simple, Oid want_type, int nparams,
                       const Oid *types, const Datum *values, const char *nulls, Datum *value, bool *isnull,
                       Oid *type);

} // namespace bgw
