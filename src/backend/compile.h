/*
 * compile.h — turning a proxy function (pg_proc row + body) into what a call
 * needs: where to connect, the remote query, how to read the result.
 *
 * Compiled functions are cached per backend, keyed by function OID, and
 * recompiled when the pg_proc row changes (CREATE OR REPLACE).
 */
#pragma once

#include "common/pg_headers.h"

namespace bgw {

/* An operand of CLUSTER / CONNECT / RUN ON, evaluated locally per call. */
enum ExprKind {
    EXPR_NONE,
    EXPR_LITERAL,   /* 'string' */
    EXPR_NUMBER,    /* RUN ON <n> */
    EXPR_ALL,       /* RUN ON ALL */
    EXPR_ANY,       /* RUN ON ANY (also the default) */
    EXPR_ARG,       /* argname or $n */
    EXPR_QUERY,     /* func(args): run locally as SELECT func(args) */
};

struct LocalExpr {
    ExprKind kind;
    char *literal;
    int64 number;
    int arg;                    /* EXPR_ARG: fcinfo index of the argument */
    char *query;                /* EXPR_QUERY: SELECT ..., parameters $1.. */
    int nparams;
    int *param_arg;             /* fcinfo index of each parameter */
    Oid *param_types;           /* its type (a SPLIT argument's element type in RUN ON) */
    void *plan;                 /* SPIPlanPtr, prepared on first use and kept */
    bool not_simple;            /* plan is not one expression (simple_query.h) */
};

struct ProxyFunction {
    Oid fn_oid;
    TransactionId fn_xmin;      /* the pg_proc row we compiled: a change means recompile */
    ItemPointerData fn_tid;
    MemoryContext cxt;          /* owns everything below */

    char *name;                 /* schema.name, for messages */
    bool plproxy_lang;          /* LANGUAGE plproxy: remote messages in PL/Proxy's form */
    bool read;                  /* declared STABLE or IMMUTABLE (LANGUAGE bgw_proxy only):
                                 * a read, which any healthy node of a partition may serve */

    /* where: CONNECT, or CLUSTER + RUN ON (+ SPLIT) */
    LocalExpr connect;
    bool connect_has_user;      /* CONNECT 'literal' names a user (parsed once) */
    LocalExpr cluster;
    LocalExpr run;
    int nargs;                  /* input arguments = fcinfo->nargs */
    Oid *arg_types;             /* per input argument */
    bool *split;                /* per input argument: SPLIT applies */
    Oid *split_elem_type;       /* per input argument: element type if split */
    bool any_split;

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

};

/* The compiled function for this call, from the cache or compiled now. */
ProxyFunction *compile_for_call(FunctionCallInfo fcinfo);

/* Full check of a function at CREATE FUNCTION time; errors point into the body. */
void compile_validate(Oid fn_oid);

} // namespace bgw
