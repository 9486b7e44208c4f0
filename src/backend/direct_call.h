/*
 * direct_call.h — a call run by the backend itself on idle pooled
 * connections it borrows from the workers (shared/lend_table.h):
 * no request slot, no worker wake-up, rows read straight from the socket.
 *
 * Backend code in the PostgreSQL style (palloc, ereport; no C++ object
 * with a destructor in any frame).
 */
#pragma once

#include "backend/call.h"

namespace bgw {

/* Run the call directly if it can be: true when it ran (its rows went to
 * the sink; a remote error has been raised). False when it cannot (a
 * multi-host target, bgw_proxy.direct_calls off, no parked connection of
 * a target's pool): nothing was sent, the caller goes through a worker. */
bool direct_call_run(const CallRequest *req, const ResultSink *sink);

/* A worker ran this call's statement on a target: whether it asked for
 * its results in binary (it prepared and described it) decides for the
 * statement's direct calls too. direct_call_binary reads that from the
 * target's columns; direct_call_learn remembers it for the statement. */
bool direct_call_binary(const CallRequest *req, int ncolumns, const proto::Column *columns);
void direct_call_learn(const CallRequest *req, bool binary);

/* A direct call is under way (a nested call must not start). */
bool direct_call_active(void);

/* The error and exit paths: each connection still borrowed is given back,
 * idle if nothing was sent on it, else broken (its worker cancels what may
 * still run, then drains it or closes it). Never raises an error. */
void direct_call_abandon(void);

} // namespace bgw
