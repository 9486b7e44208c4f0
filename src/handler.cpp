/*
 * handler.cpp — the language entry points: the call handler and validator
 * of LANGUAGE bgw_proxy. A call travels down from here: compile (cached) ->
 * target and parameters -> call_run (slot, worker) -> rows back up through
 * the result builder.
 */
#include "call.h"
#include "compile.h"
#include "result.h"
#include "shmem.h"
#include "worker.h"

#include "pg_headers.h"

extern "C" {
PG_FUNCTION_INFO_V1(bgw_proxy_call_handler);
PG_FUNCTION_INFO_V1(bgw_proxy_validator);
}

using namespace bgw;

/* libpq connection-string value quoting: 'value' with \ and ' escaped. */
static void append_conn_value(StringInfo buf, const char *v)
{
    appendStringInfoChar(buf, '\'');
    for (const char *p = v; *p; p++) {
        if (*p == '\'' || *p == '\\')
            appendStringInfoChar(buf, '\\');
        appendStringInfoChar(buf, *p);
    }
    appendStringInfoChar(buf, '\'');
}

/* The connection string as sent: the calling role is added when the
 * function's string names no user. Cached for the last role seen. */
static void final_connstr(ProxyFunction *pf, const char **connstr, const char **route_key)
{
    Oid role = GetUserId();
    if (!pf->cached_connstr || pf->cached_role != role) {
        MemoryContext old = MemoryContextSwitchTo(pf->cxt);
        StringInfoData buf;
        initStringInfo(&buf);
        appendStringInfoString(&buf, pf->connstr);
        if (!pf->connstr_has_user) {
            appendStringInfoString(&buf, " user=");
            append_conn_value(&buf, GetUserNameFromId(role, false));
        }
        if (pf->cached_connstr)
            pfree(pf->cached_connstr);
        if (pf->cached_route_key)
            pfree(pf->cached_route_key);
        pf->cached_connstr = buf.data;
        pf->cached_route_key = psprintf("%s|%u", buf.data, role);
        pf->cached_role = role;
        MemoryContextSwitchTo(old);
    }
    *connstr = pf->cached_connstr;
    *route_key = pf->cached_route_key;
}

Datum bgw_proxy_call_handler(PG_FUNCTION_ARGS)
{
    require_preloaded();
    ProxyFunction *pf = compile_for_call(fcinfo);

    const char **values = (const char **) palloc0(sizeof(char *) * (pf->nparams + 1));
    for (int k = 0; k < pf->nparams; k++) {
        int arg = pf->param_arg[k];
        if (!fcinfo->args[arg].isnull)
            values[k] = OutputFunctionCall(&pf->param_out[k], fcinfo->args[arg].value);
    }

    CallTarget target;
    target.partition = 0;
    target.nparams = pf->nparams;
    target.values = values;
    const char *route_key;
    final_connstr(pf, &target.connstr, &route_key);

    CallRequest req;
    req.function_name = pf->name;
    req.query = pf->query;
    req.ntargets = 1;
    req.targets = &target;
    req.route_key = route_key;

    ResultBuilder rb;
    result_begin(&rb, pf, fcinfo);
    call_run(&req, result_on_row, &rb);
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
