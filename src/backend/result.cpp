/*
 * result.cpp — see result.h.
 */
#include "backend/result.h"
#include "shared/binary_types.hpp"

#include "common/pg_headers.h"

namespace bgw {

void result_begin(ResultBuilder *rb, ProxyFunction *pf, FunctionCallInfo fcinfo, int ntargets)
{
    memset(rb, 0, sizeof(*rb));
    rb->ntargets = ntargets;
    rb->decoders = (ColumnDecoder **) palloc0(sizeof(ColumnDecoder *) * (ntargets + 1));
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
        rb->values = (Datum *) palloc0(sizeof(Datum) * (rb->desc->natts + 1));
        rb->nulls = (bool *) palloc0(sizeof(bool) * (rb->desc->natts + 1));
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

namespace {

/* How to read remote column `field` as a value of the declared type. The
 * worker asks for binary only where the remote type is the declared one
 * and binary-safe (shared/binary_types.hpp); anything else is refused, never guessed. */
void init_decoder(ColumnDecoder *d, int field, Oid declared, const proto::Column *columns, MemoryContext cxt,
                  const char *function)
{
    memset(d, 0, sizeof(*d));
    d->field = field;
    if (field < 0 || columns[field].format == 0)
        return;
    const proto::Column &c = columns[field];
    if (c.format != 1 || Oid(c.type) != declared || !binary_safe_type(declared))
        ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
                        errmsg("bgw_proxy function %s: a result column came in an unexpected format", function),
                        errdetail("Remote type %u in format %d, declared type %u.", c.type, int(c.format),
                                  declared)));
    Oid recv;
    getTypeBinaryInputInfo(declared, &recv, &d->recv_ioparam);
    fmgr_info_cxt(recv, &d->recv, cxt);
    d->binary = true;
}

/* A binary value of the declared type (with its typmod). */
Datum decode_binary(ColumnDecoder *d, const wire::Span &v, int32 typmod)
{
    StringInfoData buf;
    buf.data = (char *) palloc(v.len + 1);
    memcpy(buf.data, v.data, v.len);
    buf.data[v.len] = '\0';
    buf.len = int(v.len);
    buf.maxlen = int(v.len) + 1;
    buf.cursor = 0;
    return ReceiveFunctionCall(&d->recv, &buf, d->recv_ioparam, typmod);
}

} // namespace

/* Composite results are matched by column name, as PL/Proxy does: the
 * remote query may list them in another order, and a missing one is an
 * error rather than a silently shifted row. Each column is then decoded
 * from the format it comes in. */
void result_on_describe(void *arg, int target, int nfields, const proto::Column *columns)
{
    auto *rb = static_cast<ResultBuilder *>(arg);
    ProxyFunction *pf = rb->pf;
    if (pf->is_void || target < 0 || target >= rb->ntargets)
        return;
    if (pf->result_class != TYPEFUNC_COMPOSITE) {
        auto *d = (ColumnDecoder *) MemoryContextAlloc(rb->call_cxt, sizeof(ColumnDecoder));
        init_decoder(d, nfields > 0 ? 0 : -1, pf->result_type, columns, rb->call_cxt, pf->name);
        rb->decoders[target] = d;
        return;
    }
    if (nfields != pf->ncolumns)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("bgw_proxy function %s: remote query returned %d columns, expected %d",
                               pf->name, nfields, pf->ncolumns)));
    auto *decoders = (ColumnDecoder *) MemoryContextAlloc(rb->call_cxt, sizeof(ColumnDecoder) * (rb->desc->natts + 1));
    for (int i = 0; i < rb->desc->natts; i++) {
        Form_pg_attribute a = TupleDescAttr(rb->desc, i);
        int field = -1;
        if (!a->attisdropped) {
            const char *want = NameStr(a->attname);
            for (int f = 0; f < nfields && field < 0; f++)
                if (columns[f].name.len == strlen(want) && memcmp(columns[f].name.data, want, columns[f].name.len) == 0)
                    field = f;
            if (field < 0)
                ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
                                errmsg("bgw_proxy function %s: column \"%s\" is not in the remote result",
                                       pf->name, want),
                                errhint("Name the columns of the SELECT after the function's result columns.")));
        }
        init_decoder(&decoders[i], field, a->atttypid, columns, rb->call_cxt, pf->name);
    }
    rb->decoders[target] = decoders;
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

    ColumnDecoder *dec = (target >= 0 && target < rb->ntargets) ? rb->decoders[target] : nullptr;
    if (!dec)
        ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
                        errmsg("bgw_proxy function %s: a row arrived before its column names", pf->name)));
    MemoryContext old = MemoryContextSwitchTo(rb->row_cxt);
    auto cstr = [](const wire::Span &s) -> char * { return s.is_null ? nullptr : pnstrdup(s.data, s.len); };

    if (pf->result_class == TYPEFUNC_COMPOSITE) {
        AttInMetadata *in = rb->attin;
        for (int i = 0; i < rb->desc->natts; i++) {
            int f = dec[i].field;
            rb->nulls[i] = f < 0 || f >= nfields || fields[f].is_null;
            if (f < 0)
                rb->values[i] = (Datum) 0; /* dropped attribute */
            else if (rb->nulls[i])
                /* the input function sees NULLs too: a domain's NOT NULL or CHECK applies */
                rb->values[i] = InputFunctionCall(&in->attinfuncs[i], nullptr, in->attioparams[i],
                                                  in->atttypmods[i]);
            else if (dec[i].binary)
                rb->values[i] = decode_binary(&dec[i], fields[f], in->atttypmods[i]);
            else
                rb->values[i] = InputFunctionCall(&in->attinfuncs[i], cstr(fields[f]), in->attioparams[i],
                                                  in->atttypmods[i]);
        }
        HeapTuple tup = heap_form_tuple(rb->desc, rb->values, rb->nulls);
        if (rb->store) {
            tuplestore_puttuple(store_for(rb, target), tup);
        } else {
            MemoryContextSwitchTo(rb->call_cxt);
            rb->value = HeapTupleGetDatum(heap_copytuple(tup));
            rb->isnull = false;
        }
    } else {
        /* the value is built in the context it must live in: the call's for
         * a scalar result, the row's (copied by the tuplestore) for SETOF */
        if (!rb->store)
            MemoryContextSwitchTo(rb->call_cxt);
        const wire::Span &f = fields[0];
        Datum v = (Datum) 0;
        if (f.is_null)
            v = InputFunctionCall(&pf->result_in, nullptr, pf->result_ioparam, -1);
        else if (dec->binary)
            v = decode_binary(dec, f, -1);
        else
            v = InputFunctionCall(&pf->result_in, cstr(f), pf->result_ioparam, -1);
        if (rb->store) {
            bool isnull = f.is_null;
            tuplestore_putvalues(store_for(rb, target), rb->desc, &v, &isnull);
        } else {
            rb->value = v;
            rb->isnull = f.is_null;
        }
    }
    MemoryContextSwitchTo(old);
    MemoryContextReset(rb->row_cxt);
    rb->rows++;
}

void result_declare_columns(ResultBuilder *rb, CallRequest *req)
{
    ProxyFunction *pf = rb->pf;
    req->nresult_columns = 0;
    if (pf->is_void)
        return;
    int n = pf->result_class == TYPEFUNC_COMPOSITE ? rb->desc->natts : 1;
    req->result_names = (const char **) palloc0(sizeof(char *) * (n + 1));
    req->result_types = (Oid *) palloc0(sizeof(Oid) * (n + 1));
    if (pf->result_class != TYPEFUNC_COMPOSITE) {
        req->result_names[0] = "";
        req->result_types[0] = pf->result_type;
        req->nresult_columns = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        Form_pg_attribute a = TupleDescAttr(rb->desc, i);
        if (a->attisdropped)
            continue;
        req->result_names[req->nresult_columns] = NameStr(a->attname);
        req->result_types[req->nresult_columns++] = a->atttypid;
    }
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
