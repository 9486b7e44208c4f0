/*
 * result.h — turning rows received from a worker into the proxy function's
 * result: a scalar, a composite, or a SETOF streamed into a tuplestore (which
 * spills to disk past work_mem, so memory stays bounded whatever the size).
 */
#pragma once

#include "backend/call.h"
#include "backend/compile.h"

#include "common/pg_headers.h"

namespace bgw {

/* How one result column of one target is decoded. */
struct ColumnDecoder {
    int field;                  /* remote column; -1: none (a dropped attribute) */
    bool binary;                /* the value comes in binary: of the declared type itself */
    FmgrInfo recv;              /* binary: the declared type's receive function */
    Oid recv_ioparam;
};

struct ResultBuilder {
    ProxyFunction *pf;
    FunctionCallInfo fcinfo;
    MemoryContext call_cxt;     /* where the returned value must live */
    MemoryContext row_cxt;      /* reset after every row */
    TupleDesc desc;             /* composite, or SETOF's tuple shape */
    AttInMetadata *attin;       /* composite */
    int ntargets;
    ColumnDecoder **decoders;   /* per target: per result column (composite: attribute) */
    Datum *values;              /* composite: the row being built */
    bool *nulls;
    /* SETOF of several targets: rows come back in target order, as PL/Proxy
     * returns them. The head target's rows go straight into `store`; a later
     * target's wait in its own tuplestore (spilling to disk past work_mem)
     * until every target before it is done. */
    int head;
    bool *done;
    Tuplestorestate **pending;
    Tuplestorestate *store;     /* SETOF */
    int64 rows;
    Datum value;
    bool isnull;
};

void result_begin(ResultBuilder *rb, ProxyFunction *pf, FunctionCallInfo fcinfo, int ntargets);
/* Tell the worker the declared result columns (after result_begin). */
void result_declare_columns(ResultBuilder *rb, CallRequest *req);
void result_on_describe(void *arg, int target, int ncolumns, const proto::Column *columns);
void result_on_row(void *arg, int target, int nfields, const wire::Span *fields);
void result_on_target_done(void *arg, int target);
Datum result_finish(ResultBuilder *rb);

} // namespace bgw
