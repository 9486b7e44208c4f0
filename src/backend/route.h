/*
 * route.h — where a call runs: evaluates CONNECT, or CLUSTER + RUN ON
 * (+ SPLIT), for this call's arguments and builds the request's targets,
 * one per partition, each with its parameters in text form.
 */
#pragma once

#include "backend/call.h"
#include "backend/compile.h"

#include "common/pg_headers.h"

namespace bgw {

/* Fills req (palloc'd in the current memory context). req->ntargets may be
 * 0: SPLIT of empty arrays runs nowhere. */
void route_call(ProxyFunction *pf, FunctionCallInfo fcinfo, CallRequest *req);

} // namespace bgw
