/*
 * simple_query.cpp — see simple_query.h. Backend code: palloc, ereport.
 */
#include "backend/simple_query.h"

extern "C" {
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "tcop/pquery.h"
#include "nodes/params.h"
#include "utils/datum.h"
#include "utils/plancache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
}

namespace bgw {

namespace {

/* The expression of a scan of one function (the local queries are
 * SELECT * FROM f(args)) that returns one scalar and is not a
 * set-returning function, or nullptr. */
Expr *function_scan_expr(Plan *p)
{
    auto *scan = (FunctionScan *) p;
    if (scan->funcordinality || list_length(scan->functions) != 1 || list_length(p->targetlist) != 1)
        return nullptr;
    auto *f = (RangeTblFunction *) linitial(scan->functions);
    auto *tle = (TargetEntry *) linitial(p->targetlist);
    if (f->funccolcount != 1 || expression_returns_set(f->funcexpr) || type_is_rowtype(exprType(f->funcexpr)) ||
        !IsA(tle->expr, Var) || ((Var *) tle->expr)->varattno != 1)
        return nullptr;
    return (Expr *) f->funcexpr;
}

/* The plan's one expression, or nullptr: a plan of one node, no subplan,
 * no condition, one column: a function scan as above, or a Result (what
 * the planner makes of a function call it could fold to a constant). */
Expr *simple_expr(CachedPlan *cplan)
{
    if (list_length(cplan->stmt_list) != 1)
        return nullptr;
    auto *stmt = (PlannedStmt *) linitial(cplan->stmt_list);
    if (!IsA(stmt, PlannedStmt) || stmt->commandType != CMD_SELECT || stmt->subplans != NIL ||
        stmt->hasModifyingCTE || stmt->rowMarks != NIL)
        return nullptr;
    Plan *p = stmt->planTree;
    if (!p || p->lefttree || p->righttree || p->initPlan || p->qual || list_length(p->targetlist) != 1)
        return nullptr;
    if (IsA(p, FunctionScan))
        return function_scan_expr(p);
    auto *tle = (TargetEntry *) linitial(p->targetlist);
    if (!IsA(p, Result) || ((Result *) p)->resconstantqual || tle->resjunk || contain_var_clause((Node *) tle->expr))
        return nullptr;
    return tle->expr;
}

/* What SPI adds to an error of a query it runs, so an error reads the
 * same either way: a position (an error of re-parsing it after an
 * invalidation) points into the query, else a context line. */
void statement_context(void *arg)
{
    const char *query = static_cast<const char *>(arg);
    int position = geterrposition();
    if (position > 0) {
        errposition(0);
        internalerrposition(position);
        internalerrquery(query);
    } else {
        errcontext("SQL statement \"%s\"", query);
    }
}

} // namespace

bool simple_query_eval(SPIPlanPtr plan, const char *query, bool *not_simple, Oid want_type, int nparams,
                       const Oid *types, const Datum *values, const char *nulls, Datum *value, bool *isnull,
                       Oid *type)
{
    if (*not_simple)
        return false;
    List *sources = SPI_plan_get_plan_sources(plan);
    if (list_length(sources) != 1) {
        *not_simple = true;
        return false;
    }
    auto *source = (CachedPlanSource *) linitial(sources);

    ErrorContextCallback context = {error_context_stack, statement_context, const_cast<char *>(query)};
    error_context_stack = &context;

    /* the generic plan (no parameter values: nothing is folded into it),
     * re-planned by the plan cache after an invalidation; pinned by the
     * resource owner, so an error releases it */
    CachedPlan *cplan = GetCachedPlan(source, nullptr, CurrentResourceOwner, nullptr);
    Expr *expr = simple_expr(cplan);
    if (!expr || (OidIsValid(want_type) && exprType((Node *) expr) != want_type)) {
        ReleaseCachedPlan(cplan, CurrentResourceOwner);
        error_context_stack = context.previous;
        *not_simple = true;
        return false;
    }
    *type = exprType((Node *) expr);

    /* as SPI_execute_plan(read_only = false): a new snapshot that sees
     * this transaction's earlier commands (and, in a procedure after a
     * COMMIT, a portal snapshot left behind for what the value points to),
     * a command counter increment after */
    EnsurePortalSnapshotExists();
    PushActiveSnapshot(GetTransactionSnapshot());
    CommandCounterIncrement();
    UpdateActiveSnapshotCommandId();

    /* everything but the value lives in the expression context's memory,
     * freed with it */
    ExprContext *econtext = CreateStandaloneExprContext();
    MemoryContext caller = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
    ParamListInfo params = makeParamList(nparams);
    for (int i = 0; i < nparams; i++) {
        ParamExternData *p = &params->params[i];
        p->value = values[i];
        p->isnull = nulls && nulls[i] == 'n';
        p->pflags = PARAM_FLAG_CONST;
        p->ptype = types[i];
    }
    econtext->ecxt_param_list_info = params;
    ExprState *state = ExecInitExprWithParams(expr, params);
    Datum v = ExecEvalExpr(state, econtext, isnull);
    MemoryContextSwitchTo(caller);
    *value = v;
    if (!*isnull) {
        int16 typlen;
        bool typbyval;
        get_typlenbyval(*type, &typlen, &typbyval);
        if (!typbyval)
            *value = datumCopy(v, typbyval, typlen);
    }
    FreeExprContext(econtext, true);
    PopActiveSnapshot();
    CommandCounterIncrement();

    error_context_stack = context.previous;
    ReleaseCachedPlan(cplan, CurrentResourceOwner);
    return true;
}

} // namespace bgw
