/*
 * cluster.cpp — see cluster.h.
 */
#include "cluster.h"

#include "pg_headers.h"

extern "C" {
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "libpq-fe.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
}

namespace bgw {

namespace {

HTAB *clusters = nullptr;

Oid config_function(const char *name, int nargs)
{
    Oid argtypes[1] = {TEXTOID};
    List *fname = list_make2(makeString(pstrdup("plproxy")), makeString(pstrdup(name)));
    return LookupFuncName(fname, nargs, argtypes, true);
}

int parse_int_option(const char *cluster, const char *key, const char *val)
{
    char *end;
    long v = val ? strtol(val, &end, 10) : 0;
    if (val && (*end != '\0' || v < 0 || v > INT_MAX))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid value \"%s\" for option \"%s\" of cluster \"%s\"", val, key, cluster),
                        errhint("The value must be a non-negative integer.")));
    return int(v);
}

/* One key/value of get_cluster_config (or, later, of a server). */
void apply_option(ClusterConfig *c, const char *key, const char *val)
{
    if (strcmp(key, "connection_lifetime") == 0)
        c->connection_lifetime_s = parse_int_option(c->name, key, val);
    else if (strcmp(key, "query_timeout") == 0)
        c->query_timeout_ms = parse_int_option(c->name, key, val) * 1000;
    else if (strcmp(key, "connect_timeout") == 0)
        c->connect_timeout_ms = parse_int_option(c->name, key, val) * 1000;
    else if (strcmp(key, "disable_binary") == 0)
        c->disable_binary = parse_int_option(c->name, key, val) != 0;
    else if (strcmp(key, "modular_mapping") == 0 || strcmp(key, "disable_hashing") == 0)
        c->modular_mapping = parse_int_option(c->name, key, val) != 0;
    else if (strcmp(key, "max_connections") == 0)
        c->max_connections = parse_int_option(c->name, key, val);
    else if (strcmp(key, "default_user") == 0) {
        if (val && strcmp(val, "session_user") == 0)
            c->session_user = true;
        else if (!val || strcmp(val, "current_user") == 0)
            c->session_user = false;
        else
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("invalid value \"%s\" for option \"default_user\" of cluster \"%s\"", val,
                                   c->name),
                            errhint("Use current_user or session_user.")));
    } else
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("unknown option \"%s\" for cluster \"%s\"", key, c->name),
                        errhint("Known options: connection_lifetime, query_timeout, connect_timeout, "
                                "disable_binary, default_user, modular_mapping, max_connections.")));
}

void check_partition_count(const ClusterConfig *c)
{
    if (c->nparts == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("cluster \"%s\" has no partitions", c->name)));
    if (!c->modular_mapping && (c->nparts & (c->nparts - 1)) != 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("cluster \"%s\" has %d partitions, which is not a power of 2", c->name, c->nparts),
                        errhint("Use a power of 2, or set the cluster option modular_mapping to 1.")));
}

/* Load partitions and options through the configuration functions. The
 * caller has SPI connected; results are copied into c->cxt. */
void load_from_functions(ClusterConfig *c, Oid partitions_fn)
{
    Oid argtypes[1] = {TEXTOID};
    Datum args[1] = {CStringGetTextDatum(c->name)};
    MemoryContext spi_cxt = CurrentMemoryContext;

    (void) partitions_fn;
    const char *q = "SELECT * FROM plproxy.get_cluster_partitions($1)";
    if (SPI_execute_with_args(q, 1, argtypes, args, nullptr, false, 0) != SPI_OK_SELECT)
        elog(ERROR, "bgw_proxy: get_cluster_partitions failed");
    if (SPI_tuptable->tupdesc->natts != 1 || SPI_gettypeid(SPI_tuptable->tupdesc, 1) != TEXTOID)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("plproxy.get_cluster_partitions must return setof text")));
    c->nparts = int(SPI_processed);
    c->partitions = (char **) MemoryContextAllocZero(c->cxt, sizeof(char *) * (c->nparts + 1));
    c->has_user = (bool *) MemoryContextAllocZero(c->cxt, sizeof(bool) * (c->nparts + 1));
    for (int i = 0; i < c->nparts; i++) {
        char *s = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
        if (!s)
            ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                            errmsg("partition %d of cluster \"%s\" has a NULL connection string", i, c->name)));
        c->partitions[i] = MemoryContextStrdup(c->cxt, s);
    }

    Oid config_fn = config_function("get_cluster_config", 1);
    if (OidIsValid(config_fn)) {
        q = "SELECT * FROM plproxy.get_cluster_config($1)";
        if (SPI_execute_with_args(q, 1, argtypes, args, nullptr, false, 0) != SPI_OK_SELECT)
            elog(ERROR, "bgw_proxy: get_cluster_config failed");
        if (SPI_tuptable->tupdesc->natts != 2)
            ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                            errmsg("plproxy.get_cluster_config must return (key text, val text)")));
        for (uint64 i = 0; i < SPI_processed; i++) {
            char *key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
            char *val = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
            if (key)
                apply_option(c, key, val);
        }
    }
    MemoryContextSwitchTo(spi_cxt);
}

void check_connstrs(ClusterConfig *c)
{
    for (int i = 0; i < c->nparts; i++) {
        char *err = nullptr;
        PQconninfoOption *opts = PQconninfoParse(c->partitions[i], &err);
        if (!opts) {
            char *msg = err ? pstrdup(err) : pstrdup("out of memory");
            if (err)
                PQfreemem(err);
            ereport(ERROR, (errcode(ERRCODE_SYNTAX_ERROR),
                            errmsg("invalid connection string for partition %d of cluster \"%s\"", i, c->name),
                            errdetail_internal("%s", msg)));
        }
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (strcmp(o->keyword, "user") == 0 && o->val && o->val[0])
                c->has_user[i] = true;
        PQconninfoFree(opts);
    }
}

void reset_entry(ClusterConfig *c)
{
    if (c->cxt)
        MemoryContextDelete(c->cxt);
    char name[NAMEDATALEN];
    strlcpy(name, c->name, sizeof(name));
    memset(c, 0, sizeof(*c));
    strlcpy(c->name, name, sizeof(c->name));
}

} // namespace

void append_user_option(StringInfo buf, const char *role)
{
    appendStringInfoString(buf, " user='");
    for (const char *p = role; *p; p++) {
        if (*p == '\'' || *p == '\\')
            appendStringInfoChar(buf, '\\');
        appendStringInfoChar(buf, *p);
    }
    appendStringInfoChar(buf, '\'');
}

ClusterConfig *cluster_get(const char *name)
{
    if (strlen(name) >= NAMEDATALEN)
        ereport(ERROR, (errcode(ERRCODE_NAME_TOO_LONG), errmsg("cluster name \"%s\" is too long", name)));
    if (!clusters) {
        HASHCTL ctl;
        memset(&ctl, 0, sizeof(ctl));
        ctl.keysize = NAMEDATALEN;
        ctl.entrysize = sizeof(ClusterConfig);
        ctl.hcxt = CacheMemoryContext;
        clusters = hash_create("bgw_proxy clusters", 16, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
    }

    Oid version_fn = config_function("get_cluster_version", 1);
    Oid partitions_fn = config_function("get_cluster_partitions", 1);
    if (!OidIsValid(version_fn) || !OidIsValid(partitions_fn))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("bgw_proxy cluster \"%s\" is not defined", name),
                        errhint("Define plproxy.get_cluster_version(text) and "
                                "plproxy.get_cluster_partitions(text).")));
    Datum v = OidFunctionCall1(version_fn, CStringGetTextDatum(name));
    int32 version = DatumGetInt32(v);

    bool found;
    auto *c = static_cast<ClusterConfig *>(hash_search(clusters, name, HASH_ENTER, &found));
    if (!found) {
        /* hash_search leaves everything but the key uninitialised */
        static_assert(offsetof(ClusterConfig, name) == 0, "the key comes first");
        memset(reinterpret_cast<char *>(c) + NAMEDATALEN, 0, sizeof(*c) - NAMEDATALEN);
    } else if (c->cxt && c->version == version) {
        return c;
    }

    /* (re)load: a failure leaves the entry empty, so the next call retries */
    reset_entry(c);
    MemoryContext cxt = AllocSetContextCreate(CacheMemoryContext, "bgw_proxy cluster", ALLOCSET_SMALL_SIZES);
    c->cxt = cxt;
    PG_TRY();
    {
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "bgw_proxy: SPI_connect failed");
        load_from_functions(c, partitions_fn);
        SPI_finish();
        check_partition_count(c);
        check_connstrs(c);
        c->version = version;
    }
    PG_CATCH();
    {
        reset_entry(c);
        PG_RE_THROW();
    }
    PG_END_TRY();
    return c;
}

int cluster_partition_for_hash(const ClusterConfig *c, int64 hash)
{
    if (c->modular_mapping) {
        int64 m = hash % c->nparts;
        return int(m < 0 ? -m : m);
    }
    return int(hash & (c->nparts - 1));
}

char **cluster_connstrs(ClusterConfig *c, const char **route_key)
{
    Oid role = c->session_user ? GetSessionUserId() : GetUserId();
    if (!c->cached_connstrs || c->cached_role != role) {
        MemoryContext old = MemoryContextSwitchTo(c->cxt);
        if (c->cached_connstrs) {
            /* a role switch: free the previous role's strings */
            for (int i = 0; i < c->nparts; i++)
                pfree(c->cached_connstrs[i]);
            pfree(c->cached_connstrs);
            pfree(c->cached_route_key);
            c->cached_connstrs = nullptr;
        }
        char *rolename = GetUserNameFromId(role, false);
        char **out = (char **) palloc0(sizeof(char *) * (c->nparts + 1));
        for (int i = 0; i < c->nparts; i++) {
            StringInfoData buf;
            initStringInfo(&buf);
            appendStringInfoString(&buf, c->partitions[i]);
            if (!c->has_user[i])
                append_user_option(&buf, rolename);
            out[i] = buf.data;
        }
        c->cached_connstrs = out;
        c->cached_route_key = psprintf("cluster %s|%u|%d", c->name, role, c->version);
        c->cached_role = role;
        MemoryContextSwitchTo(old);
    }
    *route_key = c->cached_route_key;
    return c->cached_connstrs;
}

} // namespace bgw
