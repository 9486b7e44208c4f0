/*
 * result.cpp — see result.h.
 */
#include "result.h"

#include "pg_headers.h"

namespace bgw {

void result_begin(ResultBuilder *rb, ProxyFunction *pf, FunctionCallInfo fcinfo, int ntargets)
{
    memset(rb, 0, sizeof(*rb));
    rb->ntargets = ntargets;
    rb->colmap = (int **) palloc0(sizeof(int *) * (ntargets + 1));
    rb->pf = pf;
    rb->fcinfo = fcinfo;
    rb->call_cxt = CurrentMemoryContext;
    rb->isnull = true;

    MemoryContext result_cxt = CurrentMemoryContext;
    if (pf->retset) {
        auto *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
        if (!rsinfo || !IsA(rsinfo, ReturnSetInfo) || !(rsinfo->allowedModes & SFRM_Materialize))
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("set-valued function called in context that cannot accept a set")));
        result_cxt = rsinfo->econtext->ecxt_per_query_memory;
    }
    MemoryContext old = MemoryContextSwitchTo(result_cxt);

    if (pf->result_class == TYPEFUNC_COMPOSITE) {
        Oid rettype;
        TupleDesc d;
        if (get_call_result_type(fcinfo, &rettype, &d) != TYPEFUNC_COMPOSITE &&
            get_call_result_type(fcinfo, &rettype, &d) != TYPEFUNC_COMPOSITE_DOMAIN)
            elog(ERROR, "bgw_proxy: composite result expected");
        rb->desc = CreateTupleDescCopy(d);
        rb->attin = TupleDescGetAttInMetadata(rb->desc);
        rb->cstrings = (char **) palloc0(sizeof(char *) * (rb->desc->natts + 1));
    } else if (!pf->is_void) {
        if (pf->retset) {
            rb->desc = CreateTemplateTupleDesc(1);
            TupleDescInitEntry(rb->desc, (AttrNumber) 1, "result", pf->result_type, -1, 0);
        }
    }
    if (pf->retset) {
        auto *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
        bool random = (rsinfo->allowedModes & SFRM_Materialize_Random) != 0;
        rb->store = tuplestore_begin_heap(random, false, work_mem);
        rb->done = (bool *) palloc0(sizeof(bool) * (ntargets + 1));
        rb->pending = (Tuplestorestate **) palloc0(sizeof(Tuplestorestate *) * (ntargets + 1));
        rsinfo->returnMode = SFRM_Materialize;
        rsinfo->setResult = rb->store;
        rsinfo->setDesc = rb->desc;
    }
    MemoryContextSwitchTo(old);

    rb->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "bgw_proxy row", ALLOCSET_DEFAULT_SIZES);
}

/* Composite results are matched by column name, as PL/Proxy does: the
 * remote query may list them in another order, and a missing one is an
 * error rather than a silently shifted row. */
void result_on_describe(void *arg, int target, int nfields, const wire::Span *names)
{
    auto *rb = static_cast<ResultBuilder *>(arg);
    ProxyFunction *pf = rb->pf;
    if (pf->result_class != TYPEFUNC_COMPOSITE || pf->is_void || target < 0 || target >= rb->ntargets)
        return;
    if (nfields != pf->ncolumns)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("bgw_proxy function %s: remote query returned %d columns, expected %d",
                               pf->name, nfields, pf->ncolumns)));
    int *map = (int *) palloc(sizeof(int) * (rb->desc->natts + 1));
    for (int i = 0; i < rb->desc->natts; i++) {
        Form_pg_attribute a = TupleDescAttr(rb->desc, i);
        map[i] = -1;
        if (a->attisdropped)
            continue;
        const char *want = NameStr(a->attname);
        for (int f = 0; f < nfields && map[i] < 0; f++)
            if (names[f].len == strlen(want) && memcmp(names[f].data, want, names[f].len) == 0)
                map[i] = f;
        if (map[i] < 0)
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
                            errmsg("bgw_proxy function %s: column \"%s\" is not in the remote result", pf->name,
                                   want),
                            errhint("Name the columns of the SELECT after the function's result columns.")));
    }
    rb->colmap[target] = map;
}

/* The tuplestore a target's rows go to now (see ResultBuilder). */
Tuplestorestate *store_for(ResultBuilder *rb, int target)
{
    if (target == rb->head || target < 0 || target >= rb->ntargets)
        return rb->store;
    if (!rb->pending[target]) {
        MemoryContext old = MemoryContextSwitchTo(
            ((ReturnSetInfo *) rb->fcinfo->resultinfo)->econtext->ecxt_per_query_memory);
        rb->pending[target] = tuplestore_begin_heap(false, false, work_mem);
        MemoryContextSwitchTo(old);
    }
    return rb->pending[target];
}

void result_on_target_done(void *arg, int target)
{
    auto *rb = static_cast<ResultBuilder *>(arg);
    if (!rb->store || target < 0 || target >= rb->ntargets)
        return;
    rb->done[target] = true;
    /* move on past finished targets, appending what they kept waiting */
    while (rb->head < rb->ntargets && rb->done[rb->head]) {
        rb->head++;
        if (rb->head < rb->ntargets && rb->pending[rb->head]) {
            Tuplestorestate *p = rb->pending[rb->head];
            TupleTableSlot *slot = MakeSingleTupleTableSlot(rb->desc, &TTSOpsMinimalTuple);
            while (tuplestore_gettupleslot(p, true, false, slot))
                tuplestore_puttupleslot(rb->store, slot);
            ExecDropSingleTupleTableSlot(slot);
            tuplestore_end(p);
            rb->pending[rb->head] = nullptr;
        }
    }
}

void result_on_row(void *arg, int target, int nfields, const wire::Span *fields)
{
    auto *rb = static_cast<ResultBuilder *>(arg);
    ProxyFunction *pf = rb->pf;

    if (pf->is_void) {
        rb->rows++;
        return;
    }
    if (nfields != pf->ncolumns)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("bgw_proxy function %s: remote query returned %d columns, expected %d",
                               pf->name, nfields, pf->ncolumns)));
    if (!pf->retset && rb->rows > 0)
        ereport(ERROR, (errcode(ERRCODE_TOO_MANY_ROWS),
                        errmsg("bgw_proxy function %s: remote query returned more than one row", pf->name),
                        errhint("Declare the function RETURNS SETOF to return several rows.")));

    MemoryContext old = MemoryContextSwitchTo(rb->row_cxt);
    auto cstr = [](const wire::Span &s) -> char * { return s.is_null ? nullptr : pnstrdup(s.data, s.len); };

    if (pf->result_class == TYPEFUNC_COMPOSITE) {
        const int *map = (target >= 0 && target < rb->ntargets) ? rb->colmap[target] : nullptr;
        if (!map)
            ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
                            errmsg("bgw_proxy function %s: a row arrived before its column names", pf->name)));
        for (int i = 0; i < rb->desc->natts; i++)
            rb->cstrings[i] = (map[i] < 0 || map[i] >= nfields) ? nullptr : cstr(fields[map[i]]);
        HeapTuple tup = BuildTupleFromCStrings(rb->attin, rb->cstrings);
        if (rb->store) {
            tuplestore_puttuple(store_for(rb, target), tup);
        } else {
            MemoryContextSwitchTo(rb->call_cxt);
            rb->value = HeapTupleGetDatum(heap_copytuple(tup));
            rb->isnull = false;
        }
    } else {
        char *s = cstr(fields[0]);
        if (rb->store) {
            Datum v = InputFunctionCall(&pf->result_in, s, pf->result_ioparam, -1);
            bool isnull = (s == nullptr);
            tuplestore_putvalues(store_for(rb, target), rb->desc, &v, &isnull);
        } else {
            MemoryContextSwitchTo(rb->call_cxt);
            rb->value = InputFunctionCall(&pf->result_in, s, pf->result_ioparam, -1);
            rb->isnull = (s == nullptr);
        }
    }
    MemoryContextSwitchTo(old);
    MemoryContextReset(rb->row_cxt);
    rb->rows++;
}

Datum result_finish(ResultBuilder *rb)
{
    ProxyFunction *pf = rb->pf;
    MemoryContextDelete(rb->row_cxt);
    if (pf->retset) {
        rb->fcinfo->isnull = true;
        return (Datum) 0;
    }
    if (pf->is_void) {
        rb->fcinfo->isnull = true;
        return (Datum) 0;
    }
    if (rb->rows == 0)
        ereport(ERROR, (errcode(ERRCODE_NO_DATA_FOUND),
                        errmsg("bgw_proxy function %s: remote query returned no rows", pf->name)));
    rb->fcinfo->isnull = rb->isnull;
    return rb->value;
}

} // namespace bgw
