/*
 * handler.cpp — the language entry points: the call handler and validator
 * of LANGUAGE bgw_proxy. A call travels down from here: compile (cached) ->
 * route (where, with which parameters) -> call_run (slot, worker) -> rows
 * back up through the result builder.
 */
#include "backend/call.h"
#include "backend/cluster.h"
#include "backend/cluster_gate.h"
#include "backend/compile.h"
#include "backend/result.h"
#include "backend/route.h"
#include "shared/shmem.h"

#include "common/pg_headers.h"

extern "C" {
#include "access/reloptions.h"
PG_FUNCTION_INFO_V1(bgw_proxy_call_handler);
PG_FUNCTION_INFO_V1(bgw_proxy_validator);
}

using namespace bgw;

Datum bgw_proxy_call_handler(PG_FUNCTION_ARGS)
{
    require_preloaded();
    if (CALLED_AS_TRIGGER(fcinfo) || CALLED_AS_EVENT_TRIGGER(fcinfo))
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("bgw_proxy functions cannot be used as triggers")));
    ProxyFunction *pf = compile_for_call(fcinfo);

    CallRequest req;
    ResultBuilder rb;
    /* a cluster call runs from its gate (route_call) to its end */
    int gate = gate_depth();
    PG_TRY();
    {
        route_call(pf, fcinfo, &req);
        result_begin(&rb, pf, fcinfo, req.ntargets);
        result_declare_columns(&rb, &req);
        ResultSink sink = {result_on_describe, result_on_row, result_on_target_done, &rb};
        if (req.ntargets > 0)
            call_run(&req, &sink);
    }
    PG_CATCH();
    {
        gate_leave_to(gate);
        PG_RE_THROW();
    }
    PG_END_TRY();
    gate_leave_to(gate);
    return result_finish(&rb);
}

Datum bgw_proxy_validator(PG_FUNCTION_ARGS)
{
    Oid fn_oid = PG_GETARG_OID(0);
    if (!CheckFunctionValidatorAccess(fcinfo->flinfo->fn_oid, fn_oid))
        PG_RETURN_VOID();
    if (!check_function_bodies)
        PG_RETURN_VOID();
    compile_validate(fn_oid);
    PG_RETURN_VOID();
}

extern "C" {
PG_FUNCTION_INFO_V1(bgw_proxy_fdw_validator);
}

/* Options of the bgw_proxy foreign-data wrapper, its servers (clusters)
 * and user mappings. */
Datum bgw_proxy_fdw_validator(PG_FUNCTION_ARGS)
{
    List *options = untransformRelOptions(PG_GETARG_DATUM(0));
    Oid catalog = PG_GETARG_OID(1);
    cluster_validate_options(options, catalog);
    PG_RETURN_VOID();
}
