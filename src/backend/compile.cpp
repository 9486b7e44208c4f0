/*
 * compile.cpp — see compile.h.
 *
 * The catalog side (pg_proc, types, names) is plain PostgreSQL code. The
 * body is parsed by the pure C++ parser inside cxx_entry(); everything the
 * C++ side needs from PostgreSQL is gathered before it runs, and everything
 * it produces is copied out through pg_call(), so no PostgreSQL error can
 * unwind through the parser's std:: objects.
 */
#include <algorithm>
#include <climits>
#include <string>

#include "backend/body_parser.hpp"
#include "common/conninfo.hpp"
#include "backend/compile.h"

#include "common/pg_headers.h"
#include "common/cxx_boundary.h"

extern "C" {
#include "parser/parse_type.h"
#include "parser/parser.h"
#include "executor/spi.h"
#include "utils/elog.h"
#include "utils/regproc.h"
}

namespace bgw {

namespace {

/* What the catalog says about the function, gathered before parsing. */
struct FunctionInfo {
    const char *body;
    const char *qualified_name;   /* quoted schema.name for the remote query */
    const char *schema;
    const char *display_name;
    int n_in;                     /* input arguments (IN, INOUT, VARIADIC) */
    int *in_arg;                  /* fcinfo index of each input argument */
    const char **in_names;        /* NULL when unnamed */
    const char **in_type_names;   /* for casts */
    Oid *in_types;
    Oid *in_elem_types;           /* InvalidOid unless an array */
    const char **in_elem_type_names;
    bool last_is_variadic;
    bool plproxy_lang;            /* LANGUAGE plproxy (bgw_proxy_plproxy): PL/Proxy's restrictions too */
    bool read;                    /* STABLE or IMMUTABLE (LANGUAGE bgw_proxy only) */
    bool retset, is_void;
    bool returns_record;          /* declared RECORD: columns come from the call site */
    TypeFuncClass result_class;
    Oid result_type;
    TupleDesc result_desc;
    const char *result_type_name;
};

/* A compile error found on the C++ side, raised once we are back in C. */
struct Problem {
    bool found = false;
    int sqlstate = 0;
    size_t position = SIZE_MAX;   /* byte offset in the body */
    char message[512] = {0};
    char hint[256] = {0};
};

void set_problem(Problem &p, int sqlstate, size_t pos, const std::string &msg, const char *hint = "")
{
    p.found = true;
    p.sqlstate = sqlstate;
    p.position = pos;
    strlcpy(p.message, msg.c_str(), sizeof(p.message));
    strlcpy(p.hint, hint, sizeof(p.hint));
}

char *pg_copy(const std::string &s)
{
    return pg_call([&] { return pnstrdup(s.data(), s.size()); });
}

/* Replace argument references in a SQL fragment with $k::type; records
 * which proxy argument each parameter is. type_names gives the type each
 * argument is passed as. */
bool substitute_args(const FunctionInfo &fi, const SqlFragment &frag, const char *const *type_names,
                     std::string &out, std::vector<int> &params, Problem &p)
{
    size_t done = 0;
    for (const ArgRef &ref : frag.args) {
        int arg = -1;
        if (ref.number > 0) {
            if (ref.number > fi.n_in) {
                set_problem(p, ERRCODE_UNDEFINED_PARAMETER, ref.body_pos,
                            "there is no parameter $" + std::to_string(ref.number));
                return false;
            }
            arg = ref.number - 1;
        } else {
            for (int i = 0; i < fi.n_in; i++)
                if (fi.in_names[i] && ref.name == fi.in_names[i]) {
                    arg = i;
                    break;
                }
            if (arg < 0)
                continue; /* a column, table or other SQL name: leave it */
        }
        size_t k = 0;
        while (k < params.size() && params[k] != arg)
            k++;
        if (k == params.size())
            params.push_back(arg);
        out.append(frag.text, done, ref.offset - done);
        out += "$" + std::to_string(k + 1) + "::" + type_names[arg];
        done = ref.offset + ref.length;
    }
    out.append(frag.text, done, std::string::npos);
    return true;
}

/* The remote function: TARGET if given (its schema defaults to ours). */
std::string remote_function_name(const FunctionInfo &fi, const ParsedBody &body)
{
    if (!body.has_target)
        return fi.qualified_name;
    const std::vector<std::string> &parts = body.target_parts;
    std::string schema = parts.size() > 1 ? parts[parts.size() - 2] : fi.schema;
    const std::string &name = parts.back();
    return pg_call([&] { return quote_qualified_identifier(schema.c_str(), name.c_str()); });
}

/* The query bgw_proxy generates when the body has no SELECT. */
std::string generated_query(const FunctionInfo &fi, const std::string &fn, std::vector<int> &params)
{
    std::string args;
    for (int i = 0; i < fi.n_in; i++) {
        if (i > 0)
            args += ", ";
        if (i == fi.n_in - 1 && fi.last_is_variadic)
            args += "VARIADIC ";
        args += "$" + std::to_string(i + 1) + "::" + fi.in_type_names[i];
        params.push_back(i);
    }
    std::string call = fn + "(" + args + ")";
    std::string from = call + " AS r";
    if (fi.is_void)
        return "SELECT NULL FROM " + from;
    /* a scalar call in the target list lets the remote planner inline a SQL
     * function, which it never does in FROM; for one value it is the same */
    if (fi.result_class == TYPEFUNC_SCALAR && !fi.retset)
        return "SELECT " + call + "::" + fi.result_type_name;
    if (fi.result_class == TYPEFUNC_SCALAR)
        return std::string("SELECT r::") + fi.result_type_name + " FROM " + from;

    std::string cols, coldefs;
    TupleDesc d = fi.result_desc;
    for (int i = 0; i < d->natts; i++) {
        Form_pg_attribute a = TupleDescAttr(d, i);
        if (a->attisdropped)
            continue;
        if (!cols.empty()) {
            cols += ", ";
            coldefs += ", ";
        }
        const char *col = pg_call([&] { return quote_identifier(NameStr(a->attname)); });
        const char *type = pg_call([&] {
            return format_type_extended(a->atttypid, a->atttypmod,
                                        FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
        });
        cols += std::string("r.") + col + "::" + type;
        coldefs += std::string(col) + " " + type;
    }
    /* a function returning RECORD needs the call site's column list remotely too */
    if (fi.returns_record)
        from = call + " AS r(" + coldefs + ")";
    return "SELECT " + cols + " FROM " + from;
}

/* The input argument a name or $n refers to, or -1 with a problem set. */
int resolve_arg(const FunctionInfo &fi, const std::string &name, int number, size_t pos, Problem &p)
{
    if (number > 0) {
        if (number <= fi.n_in)
            return number - 1;
        set_problem(p, ERRCODE_UNDEFINED_PARAMETER, pos, "there is no parameter $" + std::to_string(number));
        return -1;
    }
    for (int i = 0; i < fi.n_in; i++)
        if (fi.in_names[i] && name == fi.in_names[i])
            return i;
    set_problem(p, ERRCODE_UNDEFINED_PARAMETER, pos, "there is no argument named \"" + name + "\"");
    return -1;
}

/* Store a C++ result in pf's memory. */
int *pg_int_array(const std::vector<int> &v)
{
    int *a = pg_call([&] { return static_cast<int *>(palloc0(sizeof(int) * (v.size() + 1))); });
    for (size_t i = 0; i < v.size(); i++)
        a[i] = v[i];
    return a;
}

/* CLUSTER / CONNECT / RUN ON operand -> LocalExpr. type_names/types: how
 * each argument is passed to a local query (element types for SPLIT
 * arguments in RUN ON). */
bool compile_operand(const FunctionInfo &fi, const Value &v, const char *const *type_names,
                     const Oid *types, LocalExpr &e, Problem &p)
{
    memset(&e, 0, sizeof(e));
    switch (v.kind) {
    case ValueKind::None:
        e.kind = EXPR_NONE;
        return true;
    case ValueKind::Literal:
        e.kind = EXPR_LITERAL;
        e.literal = pg_copy(v.literal);
        return true;
    case ValueKind::Number:
        e.kind = EXPR_NUMBER;
        e.number = v.number;
        return true;
    case ValueKind::All:
        e.kind = EXPR_ALL;
        return true;
    case ValueKind::Any:
        e.kind = EXPR_ANY;
        return true;
    case ValueKind::ArgName:
    case ValueKind::ArgNumber:
        e.kind = EXPR_ARG;
        e.arg = resolve_arg(fi, v.name, v.kind == ValueKind::ArgNumber ? int(v.number) : 0, v.body_pos, p);
        if (e.arg < 0)
            return false;
        e.arg = fi.in_arg[e.arg];
        return true;
    case ValueKind::Function: {
        std::string q = "SELECT * FROM ";
        std::vector<int> params;
        if (!substitute_args(fi, v.call, type_names, q, params, p))
            return false;
        e.kind = EXPR_QUERY;
        e.query = pg_copy(q);
        e.nparams = int(params.size());
        e.param_arg = pg_int_array(params);
        e.param_types = pg_call([&] { return static_cast<Oid *>(palloc0(sizeof(Oid) * (params.size() + 1))); });
        for (size_t i = 0; i < params.size(); i++) {
            e.param_types[i] = types[params[i]];
            e.param_arg[i] = fi.in_arg[params[i]];
        }
        return true;
    }
    }
    return true;
}

/* Which statements go together; false (with p set) if they do not. */
bool check_statements(const FunctionInfo &fi, const ParsedBody &body, Problem &p)
{
    if (body.has_cluster && body.has_connect) {
        set_problem(p, ERRCODE_INVALID_FUNCTION_DEFINITION, body.connect_pos,
                    "CONNECT and CLUSTER cannot be used together",
                    "A function runs either on one database (CONNECT) or on a cluster (CLUSTER).");
        return false;
    }
    if (!body.has_cluster && !body.has_connect) {
        set_problem(p, ERRCODE_INVALID_FUNCTION_DEFINITION, SIZE_MAX,
                    "bgw_proxy function has neither CONNECT nor CLUSTER",
                    "Add CONNECT 'connection string'; or CLUSTER 'name'; to the body.");
        return false;
    }
    if (body.has_connect && (body.has_run || body.has_split)) {
        set_problem(p, ERRCODE_INVALID_FUNCTION_DEFINITION, body.has_run ? body.run_pos : body.split_pos,
                    std::string(body.has_run ? "RUN ON" : "SPLIT") + " cannot be used with CONNECT",
                    "RUN ON and SPLIT choose partitions of a CLUSTER.");
        return false;
    }
    if (body.has_target && body.has_select) {
        set_problem(p, ERRCODE_INVALID_FUNCTION_DEFINITION, body.target_pos,
                    "TARGET cannot be used with SELECT",
                    "TARGET names the remote function of the generated query; a SELECT replaces that query.");
        return false;
    }
    if (fi.plproxy_lang && fi.returns_record && body.has_select) {
        set_problem(p, ERRCODE_INVALID_FUNCTION_DEFINITION, body.select_pos,
                    "SELECT cannot be used in a LANGUAGE plproxy function returning dynamic RECORD",
                    "PL/Proxy does not allow it; LANGUAGE bgw_proxy does.");
        return false;
    }
    if (body.has_run && body.run.kind == ValueKind::All && !fi.retset) {
        set_problem(p, ERRCODE_INVALID_FUNCTION_DEFINITION, body.run_pos,
                    "RUN ON ALL requires a set-returning function",
                    "Declare the function RETURNS SETOF, or run on one partition.");
        return false;
    }
    if (body.has_cluster && body.cluster.kind != ValueKind::Literal &&
        body.cluster.kind != ValueKind::Function) {
        set_problem(p, ERRCODE_SYNTAX_ERROR, body.cluster.body_pos,
                    "CLUSTER takes a string literal or a function call");
        return false;
    }
    return true;
}

/* An argument as the body names it: its name or $n. */
std::string arg_label(const ArgRef &ref) { return ref.number ? "$" + std::to_string(ref.number) : ref.name; }

/* SPLIT: which arguments, each an array. The RUN ON expression sees a split
 * argument as its element type: run_type_names / run_types say so. */
bool compile_split(const FunctionInfo &fi, const ParsedBody &body, ProxyFunction *pf,
                   std::vector<const char *> &run_type_names, std::vector<Oid> &run_types, Problem &p)
{
    pf->split = pg_call([&] { return static_cast<bool *>(palloc0(sizeof(bool) * (fi.n_in + 1))); });
    pf->split_elem_type = pg_call([&] { return static_cast<Oid *>(palloc0(sizeof(Oid) * (fi.n_in + 1))); });
    run_type_names.assign(fi.in_type_names, fi.in_type_names + fi.n_in);
    run_types.assign(fi.in_types, fi.in_types + fi.n_in);
    if (body.has_split) {
        std::vector<int> args;
        if (body.split_all) {
            /* no array argument: nothing to split, as in PL/Proxy */
            for (int i = 0; i < fi.n_in; i++)
                if (fi.in_elem_types[i] != InvalidOid)
                    args.push_back(i);
        } else {
            for (const ArgRef &ref : body.split_args) {
                int a = resolve_arg(fi, ref.name, ref.number, ref.body_pos, p);
                if (a < 0)
                    return false;
                if (std::find(args.begin(), args.end(), a) != args.end()) {
                    set_problem(p, ERRCODE_INVALID_FUNCTION_DEFINITION, ref.body_pos,
                                "argument \"" + arg_label(ref) + "\" is split twice");
                    return false;
                }
                if (fi.in_elem_types[a] == InvalidOid) {
                    set_problem(p, ERRCODE_DATATYPE_MISMATCH, ref.body_pos,
                                "SPLIT argument \"" + arg_label(ref) + "\" is not an array");
                    return false;
                }
                args.push_back(a);
            }
        }
        for (int a : args) {
            pf->split[a] = true;
            pf->split_elem_type[a] = fi.in_elem_types[a];
            run_type_names[a] = fi.in_elem_type_names[a];
            run_types[a] = fi.in_elem_types[a];
        }
        pf->any_split = !args.empty();
    }
    return true;
}

/* Where: CONNECT, CLUSTER and RUN ON, each checked against the arguments. */
bool compile_where(const FunctionInfo &fi, const ParsedBody &body, ProxyFunction *pf,
                   const std::vector<const char *> &run_type_names, const std::vector<Oid> &run_types, Problem &p)
{
    if (!compile_operand(fi, body.connect, fi.in_type_names, fi.in_types, pf->connect, p) ||
        !compile_operand(fi, body.cluster, fi.in_type_names, fi.in_types, pf->cluster, p) ||
        !compile_operand(fi, body.run, run_type_names.data(), run_types.data(), pf->run, p))
        return false;
    if (pf->connect.kind == EXPR_ARG) {
        Oid t = pg_call([&] { return getBaseType(fi.in_types[pf->connect.arg]); });
        if (t != TEXTOID && t != VARCHAROID && t != BPCHAROID) {
            set_problem(p, ERRCODE_DATATYPE_MISMATCH, body.connect.body_pos,
                        "CONNECT argument must be of type text",
                        "The argument holds the connection string.");
            return false;
        }
    }
    if (body.has_cluster && !body.has_run)
        pf->run.kind = EXPR_ANY;
    if (pf->connect.kind == EXPR_LITERAL) {
        /* a literal connection string must parse */
        ConninfoError err;
        bool has_user = false;
        if (!conninfo_each(
                pf->connect.literal,
                [&](const ConninfoOption &o) { has_user |= strcmp(o.keyword, "user") == 0 && o.val[0]; }, &err)) {
            set_problem(p, ERRCODE_SYNTAX_ERROR, body.connect.body_pos,
                        std::string("invalid connection string: ") + err.text);
            return false;
        }
        pf->connect_has_user = has_user;
    }
    if (pf->run.kind == EXPR_NUMBER && pf->run.number < 0) {
        set_problem(p, ERRCODE_INVALID_PARAMETER_VALUE, body.run.body_pos, "partition number must not be negative");
        return false;
    }
    return true;
}

/* What: the remote query (the body's SELECT, or one generated from the
 * signature) and which arguments are its parameters. */
bool compile_query(const FunctionInfo &fi, const ParsedBody &body, ProxyFunction *pf, Problem &p)
{
    std::vector<int> params;
    std::string query;
    if (body.has_select) {
        if (!substitute_args(fi, body.select, fi.in_type_names, query, params, p))
            return false;
    } else {
        query = generated_query(fi, remote_function_name(fi, body), params);
    }
    pf->query = pg_copy(query);
    pf->nparams = int(params.size());
    pf->param_arg = pg_int_array(params);
    for (size_t i = 0; i < params.size(); i++)
        pf->param_arg[i] = fi.in_arg[params[i]];
    return true;
}

/* Parse and check the body; fill pf's statements and query. C++ side. */
void compile_body(const FunctionInfo &fi, ProxyFunction *pf, Problem &p)
{
    ParsedBody body;
    ParseError perr;
    if (!parse_body(fi.body, body, perr, standard_conforming_strings)) {
        set_problem(p, ERRCODE_SYNTAX_ERROR, perr.position, perr.message);
        return;
    }
    std::vector<const char *> run_type_names;
    std::vector<Oid> run_types;
    if (check_statements(fi, body, p) && compile_split(fi, body, pf, run_type_names, run_types, p) &&
        compile_where(fi, body, pf, run_type_names, run_types, p))
        (void) compile_query(fi, body, pf, p);
}

void error_position_callback(void *arg)
{
    /* turn the position in the body into one in CREATE FUNCTION */
    (void) function_parse_error_transpose(static_cast<const char *>(arg));
}

/* Name, body, language; refuses what may not be a proxy function. */
void gather_identity(HeapTuple tup, FunctionInfo &fi)
{
    Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tup);
    bool isnull;
    Datum src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
    fi.body = isnull ? "" : TextDatumGetCString(src);
    char *nsp = get_namespace_name(proc->pronamespace);
    fi.qualified_name = quote_qualified_identifier(nsp, NameStr(proc->proname));
    fi.display_name = psprintf("%s.%s", nsp, NameStr(proc->proname));
    fi.schema = nsp;
    const char *lang = get_language_name(proc->prolang, true);
    fi.plproxy_lang = lang && strcmp(lang, "plproxy") == 0;

    /* A STABLE or IMMUTABLE LANGUAGE bgw_proxy function is a read: any
     * healthy copy of a partition may serve it (README "Replicas and
     * health"). LANGUAGE plproxy keeps PL/Proxy's rule: every function is
     * VOLATILE, a write. */
    fi.read = proc->provolatile != PROVOLATILE_VOLATILE;
    if (fi.read && fi.plproxy_lang)
        ereport(ERROR, (errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
                        errmsg("LANGUAGE plproxy function %s must be VOLATILE", fi.display_name),
                        errhint("Remove IMMUTABLE or STABLE from its definition, or declare it in "
                                "LANGUAGE bgw_proxy, where a STABLE or IMMUTABLE function is a read.")));
}

/* The input arguments, with their types as the remote query casts them.
 * True when the function has OUT (or TABLE) parameters. */
bool gather_arguments(HeapTuple tup, FunctionInfo &fi)
{
    Oid *types;
    char **names;
    char *modes;
    int nargs = get_func_arg_info(tup, &types, &names, &modes);
    fi.in_arg = (int *) palloc0(sizeof(int) * (nargs + 1));
    fi.in_names = (const char **) palloc0(sizeof(char *) * (nargs + 1));
    fi.in_type_names = (const char **) palloc0(sizeof(char *) * (nargs + 1));
    fi.in_types = (Oid *) palloc0(sizeof(Oid) * (nargs + 1));
    fi.in_elem_types = (Oid *) palloc0(sizeof(Oid) * (nargs + 1));
    fi.in_elem_type_names = (const char **) palloc0(sizeof(char *) * (nargs + 1));
    fi.n_in = 0;
    fi.last_is_variadic = false;
    bool has_out = false;
    for (int i = 0; i < nargs; i++) {
        char mode = modes ? modes[i] : PROARGMODE_IN;
        has_out = has_out || mode == PROARGMODE_OUT || mode == PROARGMODE_INOUT || mode == PROARGMODE_TABLE;
        if (mode == PROARGMODE_OUT || mode == PROARGMODE_TABLE)
            continue;
        int k = fi.n_in++;
        fi.in_arg[k] = k;
        fi.in_names[k] = (names && names[i] && names[i][0]) ? names[i] : nullptr;
        fi.in_types[k] = types[i];
        fi.in_type_names[k] = format_type_extended(types[i], -1, FORMAT_TYPE_FORCE_QUALIFY);
        fi.in_elem_types[k] = get_element_type(getBaseType(types[i]));
        if (fi.in_elem_types[k] != InvalidOid)
            fi.in_elem_type_names[k] = format_type_extended(fi.in_elem_types[k], -1, FORMAT_TYPE_FORCE_QUALIFY);
        fi.last_is_variadic = (mode == PROARGMODE_VARIADIC);
        if (IsPolymorphicType(types[i]))
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("bgw_proxy functions cannot have arguments of polymorphic type %s",
                                   format_type_be(types[i])),
                            errhint("The remote query casts every argument to its declared type.")));
        if (get_typtype(types[i]) == TYPTYPE_PSEUDO && types[i] != RECORDOID)
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("bgw_proxy functions cannot have arguments of pseudo-type %s",
                                   format_type_be(types[i]))));
        if (mode == PROARGMODE_VARIADIC && fi.plproxy_lang)
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("LANGUAGE plproxy functions cannot have VARIADIC arguments"),
                            errhint("PL/Proxy does not support them; LANGUAGE bgw_proxy does.")));
    }
    return has_out;
}

/* The result: its class (scalar or composite), type, shape. fcinfo is
 * null when validating (CREATE FUNCTION), set when called. */
void gather_result(HeapTuple tup, Oid fn_oid, FunctionCallInfo fcinfo, bool has_out, FunctionInfo &fi)
{
    Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tup);
    fi.retset = proc->proretset;
    TupleDesc desc = nullptr;
    Oid rettype;
    fi.result_class = fcinfo ? get_call_result_type(fcinfo, &rettype, &desc)
                             : get_func_result_type(fn_oid, &rettype, &desc);
    fi.result_type = rettype;
    fi.result_desc = desc;
    if (IsPolymorphicType(proc->prorettype))
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("bgw_proxy functions cannot return polymorphic type %s",
                               format_type_be(proc->prorettype))));
    fi.is_void = (rettype == VOIDOID);
    /* like PL/Proxy, checked when called (CREATE FUNCTION accepts it) */
    if (fcinfo && get_typtype(proc->prorettype) == TYPTYPE_PSEUDO && proc->prorettype != VOIDOID &&
        proc->prorettype != RECORDOID)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("bgw_proxy functions cannot return pseudo-type %s",
                               format_type_be(proc->prorettype))));
    /* RECORD without OUT parameters: the column definition list at the call
     * site gives the columns (get_call_result_type resolves it) */
    fi.returns_record = (proc->prorettype == RECORDOID && !has_out);
    if (fi.result_class == TYPEFUNC_RECORD) {
        if (fcinfo)
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("function returning record called in context that cannot accept type record"),
                            errhint("Call it in FROM with a column definition list: ... AS (col type, ...).")));
        fi.result_class = TYPEFUNC_SCALAR; /* validation only: no query is built for record */
    }
    if (fi.result_class != TYPEFUNC_SCALAR && fi.result_class != TYPEFUNC_COMPOSITE &&
        fi.result_class != TYPEFUNC_COMPOSITE_DOMAIN)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("bgw_proxy functions cannot return type %s", format_type_be(rettype))));
    if (fi.result_class == TYPEFUNC_COMPOSITE_DOMAIN)
        fi.result_class = TYPEFUNC_COMPOSITE;
    fi.result_type_name = format_type_extended(rettype, -1, FORMAT_TYPE_FORCE_QUALIFY);
}

void gather_info(HeapTuple tup, Oid fn_oid, FunctionCallInfo fcinfo, FunctionInfo &fi)
{
    gather_identity(tup, fi);
    bool has_out = gather_arguments(tup, fi);
    gather_result(tup, fn_oid, fcinfo, has_out, fi);
}

/* Compile into a new memory context under the current one. */
ProxyFunction *compile(HeapTuple tup, Oid fn_oid, FunctionCallInfo fcinfo)
{
    MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "bgw_proxy function",
                                              ALLOCSET_SMALL_SIZES);
    MemoryContext old = MemoryContextSwitchTo(cxt);

    FunctionInfo fi;
    gather_info(tup, fn_oid, fcinfo, fi);

    auto *pf = static_cast<ProxyFunction *>(palloc0(sizeof(ProxyFunction)));
    pf->fn_oid = fn_oid;
    pf->fn_xmin = HeapTupleHeaderGetRawXmin(tup->t_data);
    pf->fn_tid = tup->t_self;
    pf->cxt = cxt;
    pf->name = pstrdup(fi.display_name);
    pf->plproxy_lang = fi.plproxy_lang;
    pf->read = fi.read;
    pf->retset = fi.retset;
    pf->is_void = fi.is_void;
    pf->result_class = fi.result_class;
    pf->result_type = fi.result_type;
    pf->result_desc = fi.result_desc ? CreateTupleDescCopy(fi.result_desc) : nullptr;
    pf->nargs = fi.n_in;
    pf->arg_types = (Oid *) palloc0(sizeof(Oid) * (fi.n_in + 1));
    memcpy(pf->arg_types, fi.in_types, sizeof(Oid) * fi.n_in);
    pf->ncolumns = 1;
    if (pf->result_class == TYPEFUNC_COMPOSITE) {
        pf->ncolumns = 0;
        for (int i = 0; i < pf->result_desc->natts; i++)
            if (!TupleDescAttr(pf->result_desc, i)->attisdropped)
                pf->ncolumns++;
    }

    Problem problem;
    cxx_entry([&] { compile_body(fi, pf, problem); });
    if (problem.found) {
        int pos = 0;
        if (problem.position != SIZE_MAX)
            pos = pg_mbstrlen_with_len(fi.body, int(Min(problem.position, strlen(fi.body)))) + 1;
        ereport(ERROR, (errcode(problem.sqlstate), errmsg("%s", problem.message),
                        problem.hint[0] ? errhint("%s", problem.hint) : 0,
                        pos ? internalerrposition(pos) : 0, pos ? internalerrquery(fi.body) : 0));
    }

    if (pf->result_class == TYPEFUNC_SCALAR && !pf->is_void) {
        Oid infn;
        getTypeInputInfo(pf->result_type, &infn, &pf->result_ioparam);
        fmgr_info_cxt(infn, &pf->result_in, cxt);
    }

    pf->param_out = (FmgrInfo *) palloc0(sizeof(FmgrInfo) * (pf->nparams + 1));
    for (int k = 0; k < pf->nparams; k++) {
        Oid outfn;
        bool varlena;
        getTypeOutputInfo(fi.in_types[pf->param_arg[k]], &outfn, &varlena);
        fmgr_info_cxt(outfn, &pf->param_out[k], cxt);
    }
    MemoryContextSwitchTo(old);
    return pf;
}

struct CacheEntry {
    Oid fn_oid;
    ProxyFunction *pf;
};

/* The row type the compiled query reads must still be the call's: ALTER
 * TYPE / ALTER TABLE change it without touching pg_proc. */
bool result_type_unchanged(ProxyFunction *pf, FunctionCallInfo fcinfo)
{
    if (pf->result_class != TYPEFUNC_COMPOSITE)
        return true;
    Oid type;
    TupleDesc now;
    TypeFuncClass cls = get_call_result_type(fcinfo, &type, &now);
    return (cls == TYPEFUNC_COMPOSITE || cls == TYPEFUNC_COMPOSITE_DOMAIN) && now &&
           equalTupleDescs(now, pf->result_desc);
}

/* SPI plans are kept outside pf->cxt: free them with it. */
void free_function(ProxyFunction *pf)
{
    for (LocalExpr *x : {&pf->connect, &pf->cluster, &pf->run})
        if (x->plan)
            SPI_freeplan(static_cast<SPIPlanPtr>(x->plan));
    MemoryContextDelete(pf->cxt);
}
HTAB *cache = nullptr;

} // namespace

ProxyFunction *compile_for_call(FunctionCallInfo fcinfo)
{
    Oid fn_oid = fcinfo->flinfo->fn_oid;
    if (!cache) {
        HASHCTL ctl;
        memset(&ctl, 0, sizeof(ctl));
        ctl.keysize = sizeof(Oid);
        ctl.entrysize = sizeof(CacheEntry);
        ctl.hcxt = CacheMemoryContext;
        cache = hash_create("bgw_proxy functions", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
    }
    HeapTuple tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
    if (!HeapTupleIsValid(tup))
        elog(ERROR, "cache lookup failed for function %u", fn_oid);

    bool found;
    auto *e = static_cast<CacheEntry *>(hash_search(cache, &fn_oid, HASH_FIND, &found));
    if (found && e->pf->fn_xmin == HeapTupleHeaderGetRawXmin(tup->t_data) &&
        ItemPointerEquals(&e->pf->fn_tid, &tup->t_self) && result_type_unchanged(e->pf, fcinfo)) {
        ReleaseSysCache(tup);
        return e->pf;
    }

    ProxyFunction *pf = compile(tup, fn_oid, fcinfo);
    ReleaseSysCache(tup);
    MemoryContextSetParent(pf->cxt, CacheMemoryContext);

    e = static_cast<CacheEntry *>(hash_search(cache, &fn_oid, HASH_ENTER, &found));
    if (found)
        free_function(e->pf);
    e->pf = pf;
    return pf;
}

void compile_validate(Oid fn_oid)
{
    HeapTuple tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
    if (!HeapTupleIsValid(tup))
        elog(ERROR, "cache lookup failed for function %u", fn_oid);
    bool isnull;
    Datum src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
    char *body = isnull ? pstrdup("") : TextDatumGetCString(src);

    ErrorContextCallback cb;
    cb.callback = error_position_callback;
    cb.arg = body;
    cb.previous = error_context_stack;
    error_context_stack = &cb;

    ProxyFunction *pf = compile(tup, fn_oid, nullptr);
    MemoryContextDelete(pf->cxt);

    error_context_stack = cb.previous;
    ReleaseSysCache(tup);
}

} // namespace bgw
