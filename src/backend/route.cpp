/*
 * route.cpp — see route.h. Backend code: palloc, ereport, SPI.
 */
#include "backend/route.h"
#include "backend/cluster.h"
#include "backend/cluster_gate.h"
#include "backend/simple_query.h"
#include "common/guc.h"
#include "shared/node_table.h"

#include "common/pg_headers.h"

extern "C" {
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/array.h"
}

namespace bgw {

namespace {

/* The arguments of one call, with SPLIT arrays taken apart. */
struct CallArgs {
    FunctionCallInfo fcinfo;
    ProxyFunction *pf;
    int nelems;                 /* elements per split array (-1: no SPLIT) */
    Datum **elems;              /* per argument: elements if split */
    bool **elem_nulls;
};

/* Value of argument `arg` as passed to a local query: its element `e`
 * when the argument is split and an element is being routed. */
void arg_value(const CallArgs &a, int arg, int e, Datum *v, bool *isnull)
{
    if (e >= 0 && a.pf->split[arg]) {
        *v = a.elems[arg][e];
        *isnull = a.elem_nulls[arg][e];
    } else {
        *v = a.fcinfo->args[arg].value;
        *isnull = a.fcinfo->args[arg].isnull;
    }
}

int64 datum_to_hash(Datum v, Oid type, const char *what)
{
    switch (type) {
    case INT2OID: return DatumGetInt16(v);
    case INT4OID: return DatumGetInt32(v);
    case INT8OID: return DatumGetInt64(v);
    default:
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("%s must be of type int2, int4 or int8, not %s", what, format_type_be(type))));
    }
    return 0;
}

void null_hash_error(ProxyFunction *pf)
{
    ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                    errmsg("bgw_proxy function %s: the RUN ON hash value is NULL", pf->name),
                    errhint("Every call must map to a partition; handle NULL keys before the call.")));
}

/* Run a function-form operand locally; on_value is called for each row's
 * first column. Element e of split arguments is used when e >= 0. */
template <typename F>
void eval_query(LocalExpr *x, const CallArgs &a, int e, F on_value)
{
    Datum *values = (Datum *) palloc0(sizeof(Datum) * (x->nparams + 1));
    char *nulls = (char *) palloc0(x->nparams + 1);
    for (int i = 0; i < x->nparams; i++) {
        bool isnull;
        arg_value(a, x->param_arg[i], e, &values[i], &isnull);
        nulls[i] = isnull ? 'n' : ' ';
    }
    Datum v;
    bool isnull;
    Oid type;
    /* one expression (RUN ON hashtext(k::text)): no executor, once SPI
     * prepared it */
    if (x->plan && simple_query_eval(static_cast<SPIPlanPtr>(x->plan), x->query, &x->not_simple, InvalidOid,
                                     x->nparams, x->param_types, values, nulls, &v, &isnull, &type)) {
        pfree(values);
        pfree(nulls);
        on_value(v, isnull, type);
        return;
    }

    /* on_value runs in the caller's context: what it keeps must outlive
     * SPI_finish, which frees SPI's memory */
    MemoryContext caller_cxt = CurrentMemoryContext;
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "bgw_proxy: SPI_connect failed");
    if (!x->plan) {
        SPIPlanPtr plan = SPI_prepare(x->query, x->nparams, x->param_types);
        if (!plan)
            elog(ERROR, "bgw_proxy: could not prepare \"%s\": %s", x->query, SPI_result_code_string(SPI_result));
        SPI_keepplan(plan);
        x->plan = plan;
    }
    int rc = SPI_execute_plan(static_cast<SPIPlanPtr>(x->plan), values, nulls, false, 0);
    pfree(values);
    pfree(nulls);
    if (rc != SPI_OK_SELECT)
        elog(ERROR, "bgw_proxy: local query failed: %s", SPI_result_code_string(rc));
    TupleDesc d = SPI_tuptable->tupdesc;
    type = SPI_gettypeid(d, 1);
    for (uint64 r = 0; r < SPI_processed; r++) {
        v = SPI_getbinval(SPI_tuptable->vals[r], d, 1, &isnull);
        MemoryContext spi_cxt = MemoryContextSwitchTo(caller_cxt);
        on_value(v, isnull, type);
        MemoryContextSwitchTo(spi_cxt);
    }
    SPI_finish();
}

/* RUN ON ANY: a random partition, among those with a node up (for a
 * write: an up primary) when some have none (node_table.h; single-host
 * partitions are never down, nor are nodes whose state is not current).
 * Drawing once and, if that partition is down, again among the others
 * that are not keeps the choice uniform over the live ones, and costs one
 * look at the node table when nothing is down. If every partition is
 * down, the first draw stands and the call fails there. */
int any_partition(ClusterConfig *c, bool need_primary)
{
    int p = int(pg_prng_uint64_range(&pg_global_prng_state, 0, uint64(c->nparts - 1)));
    if (!node_partition_down(MyDatabaseId, c->name, p, need_primary))
        return p;
    int *live = (int *) palloc(sizeof(int) * c->nparts);
    int nlive = 0;
    for (int q = 0; q < c->nparts; q++)
        if (q != p && !node_partition_down(MyDatabaseId, c->name, q, need_primary))
            live[nlive++] = q;
    if (nlive > 0)
        p = live[pg_prng_uint64_range(&pg_global_prng_state, 0, uint64(nlive - 1))];
    pfree(live);
    return p;
}

/* Tag the partitions one routing decision (for element e, or the whole
 * call when e < 0) selects; add(part) is called for each. */
template <typename F>
void route_one(ProxyFunction *pf, ClusterConfig *c, const CallArgs &a, int e, F add)
{
    LocalExpr *run = &pf->run;
    auto add_hash = [&](Datum v, bool isnull, Oid type) {
        if (isnull)
            null_hash_error(pf);
        add(cluster_partition_for_hash(c, datum_to_hash(v, type, "the RUN ON hash value")));
    };
    switch (run->kind) {
    case EXPR_ALL:
        for (int p = 0; p < c->nparts; p++)
            add(p);
        break;
    case EXPR_ANY:
        add(any_partition(c, !pf->read));
        break;
    case EXPR_NUMBER:
        if (run->number >= c->nparts)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("bgw_proxy function %s: partition %lld does not exist", pf->name,
                                   (long long) run->number),
                            errdetail("Cluster \"%s\" has %d partitions.", c->name, c->nparts)));
        add(int(run->number));
        break;
    case EXPR_ARG: {
        Datum v;
        bool isnull;
        int arg = run->arg;
        arg_value(a, arg, e, &v, &isnull);
        Oid type = (e >= 0 && pf->split[arg]) ? pf->split_elem_type[arg] : pf->arg_types[arg];
        if (isnull)
            null_hash_error(pf);
        Oid elem = get_element_type(getBaseType(type));
        if (OidIsValid(elem)) {
            /* an array of hash values tags several partitions */
            ArrayType *arr = DatumGetArrayTypeP(v);
            int16 typlen;
            bool typbyval;
            char typalign;
            get_typlenbyvalalign(elem, &typlen, &typbyval, &typalign);
            Datum *vals;
            bool *nulls;
            int n;
            deconstruct_array(arr, elem, typlen, typbyval, typalign, &vals, &nulls, &n);
            for (int i = 0; i < n; i++)
                add_hash(vals[i], nulls[i], elem);
        } else {
            add_hash(v, false, getBaseType(type));
        }
        break;
    }
    case EXPR_QUERY:
        eval_query(run, a, e, add_hash);
        break;
    default:
        elog(ERROR, "bgw_proxy: no RUN ON for cluster call");
    }
}

/* Take the SPLIT arrays apart; all must have the same number of elements. */
void split_arrays(ProxyFunction *pf, CallArgs &a)
{
    a.nelems = -1;
    a.elems = (Datum **) palloc0(sizeof(Datum *) * (pf->nargs + 1));
    a.elem_nulls = (bool **) palloc0(sizeof(bool *) * (pf->nargs + 1));
    if (!pf->any_split)
        return;
    for (int arg = 0; arg < pf->nargs; arg++) {
        if (!pf->split[arg])
            continue;
        int n = 0;
        if (!a.fcinfo->args[arg].isnull) {
            ArrayType *arr = DatumGetArrayTypeP(a.fcinfo->args[arg].value);
            if (ARR_NDIM(arr) > 1)
                ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
                                errmsg("bgw_proxy function %s: SPLIT needs one-dimensional arrays", pf->name)));
            Oid elem = pf->split_elem_type[arg];
            int16 typlen;
            bool typbyval;
            char typalign;
            get_typlenbyvalalign(elem, &typlen, &typbyval, &typalign);
            deconstruct_array(arr, elem, typlen, typbyval, typalign, &a.elems[arg], &a.elem_nulls[arg], &n);
        }
        if (a.nelems >= 0 && n != a.nelems)
            ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
                            errmsg("bgw_proxy function %s: SPLIT arrays have different lengths (%d and %d)",
                                   pf->name, a.nelems, n)));
        a.nelems = n;
    }
}

/* Text form of a parameter for one target. */
const char *param_text(ProxyFunction *pf, const CallArgs &a, int k, const int *elems, int nelems)
{
    int arg = pf->param_arg[k];
    if (pf->split[arg]) {
        if (a.fcinfo->args[arg].isnull)
            return nullptr;
        Oid elem = pf->split_elem_type[arg];
        int16 typlen;
        bool typbyval;
        char typalign;
        get_typlenbyvalalign(elem, &typlen, &typbyval, &typalign);
        Datum *vals = (Datum *) palloc(sizeof(Datum) * (nelems + 1));
        bool *nulls = (bool *) palloc(sizeof(bool) * (nelems + 1));
        for (int i = 0; i < nelems; i++) {
            vals[i] = a.elems[arg][elems[i]];
            nulls[i] = a.elem_nulls[arg][elems[i]];
        }
        int dims[1] = {nelems};
        int lbs[1] = {1};
        ArrayType *part = construct_md_array(vals, nulls, 1, dims, lbs, elem, typlen, typbyval, typalign);
        return OutputFunctionCall(&pf->param_out[k], PointerGetDatum(part));
    }
    if (a.fcinfo->args[arg].isnull)
        return nullptr;
    return OutputFunctionCall(&pf->param_out[k], a.fcinfo->args[arg].value);
}

/* CONNECT: one target. */
void route_connect(ProxyFunction *pf, const CallArgs &a, CallRequest *req)
{
    const char *connstr = nullptr;
    LocalExpr *x = &pf->connect;
    if (x->kind == EXPR_LITERAL) {
        connstr = x->literal;
    } else if (x->kind == EXPR_ARG) {
        if (a.fcinfo->args[x->arg].isnull)
            ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                            errmsg("bgw_proxy function %s: the CONNECT string is NULL", pf->name)));
        connstr = TextDatumGetCString(a.fcinfo->args[x->arg].value);
    } else {
        eval_query(x, a, -1, [&](Datum v, bool isnull, Oid type) {
            if (connstr)
                ereport(ERROR, (errcode(ERRCODE_CARDINALITY_VIOLATION),
                                errmsg("bgw_proxy function %s: the CONNECT function returned more than one row",
                                       pf->name)));
            if (isnull || type != TEXTOID)
                ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                                errmsg("bgw_proxy function %s: the CONNECT function must return non-NULL text",
                                       pf->name)));
            connstr = TextDatumGetCString(v);
        });
        if (!connstr)
            ereport(ERROR, (errcode(ERRCODE_NO_DATA_FOUND),
                            errmsg("bgw_proxy function %s: the CONNECT function returned no row", pf->name)));
    }

    /* the calling role is the user unless the string names one (a literal
     * was checked once, at compile time) */
    bool has_user = x->kind == EXPR_LITERAL
                        ? pf->connect_has_user
                        : connstr_names_user(connstr, ERRCODE_SYNTAX_ERROR,
                                             psprintf("CONNECT of bgw_proxy function %s", pf->name));

    CallTarget *t = (CallTarget *) palloc0(sizeof(CallTarget));
    t->partition = 0;
    t->connstr = connstr;
    t->user = has_user ? nullptr : GetUserNameFromId(GetUserId(), false);
    t->nparams = pf->nparams;
    t->values = (const char **) palloc0(sizeof(char *) * (pf->nparams + 1));
    for (int k = 0; k < pf->nparams; k++)
        t->values[k] = param_text(pf, a, k, nullptr, 0);
    req->ntargets = 1;
    req->targets = t;
    req->route_key = psprintf("connect %s|%u", connstr, GetUserId());
    req->connect_timeout_ms = guc_connect_timeout_ms;
    req->query_timeout_ms = guc_query_timeout_ms;
}

/* Which partitions a call runs on: *order_out has them in first-tagged
 * order (the order results come back in); with SPLIT, (*elems_out)[p]
 * lists the elements partition p gets, (*nelems_out)[p] how many. */
void tag_partitions(ProxyFunction *pf, ClusterConfig *c, const CallArgs &a, int *ntargets_out, int **order_out,
                    int ***elems_out, int **nelems_out)
{
    int n = c->nparts;
    bool *tagged = (bool *) palloc0(sizeof(bool) * n);
    int *order = (int *) palloc(sizeof(int) * n);
    int ntargets = 0;
    int **elems = (int **) palloc0(sizeof(int *) * n);
    int *nelems = (int *) palloc0(sizeof(int) * n);
    auto tag = [&](int p) {
        if (!tagged[p]) {
            tagged[p] = true;
            order[ntargets++] = p;
        }
    };
    if (a.nelems < 0) {
        route_one(pf, c, a, -1, tag);
    } else {
        for (int p = 0; p < n; p++)
            elems[p] = (int *) palloc(sizeof(int) * (a.nelems + 1));
        for (int e = 0; e < a.nelems; e++) {
            route_one(pf, c, a, e, [&](int p) {
                /* an element goes to a partition once, however often tagged */
                if (nelems[p] == 0 || elems[p][nelems[p] - 1] != e)
                    elems[p][nelems[p]++] = e;
                tag(p);
            });
        }
    }
    pfree(tagged);
    *ntargets_out = ntargets;
    *order_out = order;
    *elems_out = elems;
    *nelems_out = nelems;
}

/* CLUSTER: one target per tagged partition. */
void route_cluster(ProxyFunction *pf, const CallArgs &a, CallRequest *req)
{
    const char *name = nullptr;
    if (pf->cluster.kind == EXPR_LITERAL) {
        name = pf->cluster.literal;
    } else {
        eval_query(&pf->cluster, a, -1, [&](Datum v, bool isnull, Oid type) {
            if (isnull || type != TEXTOID || name)
                ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                                errmsg("bgw_proxy function %s: the CLUSTER function must return one non-NULL "
                                       "text value", pf->name)));
            name = TextDatumGetCString(v);
        });
        if (!name)
            ereport(ERROR, (errcode(ERRCODE_NO_DATA_FOUND),
                            errmsg("bgw_proxy function %s: the CLUSTER function returned no row", pf->name)));
    }
    /* the configuration is read behind the cluster's gate, and read again
     * after waiting for a pause of a partition the call runs on */
    ClusterConfig *c;
    int ntargets;
    int *order;
    int **elems;
    int *nelems;
    do {
        gate_enter(name);
        c = cluster_get(name);
        tag_partitions(pf, c, a, &ntargets, &order, &elems, &nelems);
    } while (!gate_admit(order, ntargets));


    const char *route_key;
    ClusterLogin login = cluster_login(c, &route_key);
    CallTarget *targets = (CallTarget *) palloc0(sizeof(CallTarget) * (ntargets + 1));

    /* parameters not split are the same for every target: convert once */
    const char **common = (const char **) palloc0(sizeof(char *) * (pf->nparams + 1));
    for (int k = 0; k < pf->nparams; k++)
        if (!pf->split[pf->param_arg[k]])
            common[k] = param_text(pf, a, k, nullptr, 0);

    for (int t = 0; t < ntargets; t++) {
        int p = order[t];
        targets[t].partition = uint32(p);
        targets[t].connstr = c->partitions[p];
        targets[t].user = login.user ? login.user : (c->has_user[p] ? nullptr : login.role);
        targets[t].password = login.password;
        targets[t].require_password = login.require_password;
        targets[t].weights = c->weights[p];
        targets[t].nparams = pf->nparams;
        targets[t].values = (const char **) palloc0(sizeof(char *) * (pf->nparams + 1));
        for (int k = 0; k < pf->nparams; k++)
            targets[t].values[k] = pf->split[pf->param_arg[k]] ? param_text(pf, a, k, elems[p], nelems[p])
                                                                  : common[k];
    }
    req->ntargets = ntargets;
    req->targets = targets;
    req->route_key = route_key;
    req->cluster_name = c->name;
    req->config_version = OidIsValid(c->serverid) ? -1 : int64(c->version);
    req->disable_binary = c->disable_binary;
    req->connect_timeout_ms = c->connect_timeout_ms ? c->connect_timeout_ms : guc_connect_timeout_ms;
    req->query_timeout_ms = c->query_timeout_ms ? c->query_timeout_ms : guc_query_timeout_ms;
    req->max_connections = c->max_connections;
    req->connection_lifetime_s = c->connection_lifetime_s;
    req->read_from = c->read_from;
    req->max_replica_lag = c->max_replica_lag;
    req->health_check_interval_ms = c->health_check_interval_ms ? c->health_check_interval_ms
                                                                : guc_health_check_interval_ms;
    req->health_check_timeout_ms = c->health_check_timeout_ms ? c->health_check_timeout_ms
                                                              : guc_health_check_timeout_ms;
    req->health_check_retries = c->health_check_retries ? c->health_check_retries : guc_health_check_retries;
    /* a failed partition can only be left out of a call that asked for all */
    req->partial_results = c->partial_results && pf->run.kind == EXPR_ALL;
}

} // namespace

void route_call(ProxyFunction *pf, FunctionCallInfo fcinfo, CallRequest *req)
{
    memset(req, 0, sizeof(*req));
    req->function_name = pf->name;
    req->plproxy_messages = pf->plproxy_lang;
    req->read = pf->read; /* CONNECT calls carry it too: it only matters for multi-host partitions */
    req->nargs = pf->nargs;
    req->query = pf->query;

    CallArgs a;
    a.fcinfo = fcinfo;
    a.pf = pf;
    split_arrays(pf, a);
    if (pf->connect.kind != EXPR_NONE)
        route_connect(pf, a, req);
    else
        route_cluster(pf, a, req);
}

} // namespace bgw
