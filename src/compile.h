/*
 * compile.h — turning a proxy function (pg_proc row + body) into what a call
 * needs: where to connect, the remote query, how to read the result.
 *
 * Compiled functions are cached per backend, keyed by function OID, and
 * recompiled when the pg_proc row changes (CREATE OR REPLACE).
 */
#pragma once

#include "pg_headers.h"

namespace bgw {

struct ProxyFunction {
    Oid fn_oid;
    TransactionId fn_xmin;      /* the pg_proc row we compiled: a change means recompile */
    ItemPointerData fn_tid;
    MemoryContext cxt;          /* owns everything below */

    char *name;                 /* schema.name, for messages */

    /* where: CONNECT 'literal' */
    char *connstr;
    bool connstr_has_user;

    /* what: the remote query and which proxy arguments are its parameters */
    char *query;
    int nparams;
    int *param_arg;             /* param k ($k+1) is proxy argument param_arg[k] */
    FmgrInfo *param_out;        /* output function of each parameter's type */

    /* how the result is read */
    bool retset;
    bool is_void;
    TypeFuncClass result_class; /* TYPEFUNC_SCALAR or TYPEFUNC_COMPOSITE */
    Oid result_type;
    TupleDesc result_desc;      /* composite: the row type, in cxt */
    int ncolumns;               /* columns the remote query returns */
    FmgrInfo result_in;         /* scalar: input function of the result type */
    Oid result_ioparam;

    /* call-time cache: the final connection string for the last role */
    Oid cached_role;
    char *cached_connstr;
    char *cached_route_key;
};

/* The compiled function for this call, from the cache or compiled now. */
ProxyFunction *compile_for_call(FunctionCallInfo fcinfo);

/* Full check of a function at CREATE FUNCTION time; errors point into the body. */
void compile_validate(Oid fn_oid);

} // namespace bgw
