/*
 * cluster.cpp — see cluster.h.
 */
#include "common/conninfo.hpp"
#include "common/node_weights.hpp"
#include "shared/wire_codec.hpp"
#include "backend/cluster.h"
#include "backend/simple_query.h"
#include "backend/string_info_buf.h"
#include "common/guc.h"
#include "shared/shmem.h"

#include "common/pg_headers.h"

extern "C" {
#include "access/reloptions.h"
#include "catalog/namespace.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "utils/inval.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
}

namespace bgw {

namespace {

HTAB *clusters = nullptr;

/* A server or user mapping changed: SQL/MED clusters reload on next use. */
void invalidate_sqlmed(Datum arg, int cacheid, uint32 hashvalue)
{
    (void) arg;
    (void) cacheid;
    (void) hashvalue;
    if (!clusters)
        return;
    HASH_SEQ_STATUS seq;
    hash_seq_init(&seq, clusters);
    ClusterConfig *c;
    while ((c = static_cast<ClusterConfig *>(hash_seq_search(&seq))) != nullptr)
        if (OidIsValid(c->serverid))
            c->stale = true;
}

/* partition_N or pN: N, else -1. */
int partition_option_number(const char *name)
{
    const char *digits = nullptr;
    if (strncmp(name, "partition_", 10) == 0)
        digits = name + 10;
    else if (name[0] == 'p' && isdigit((unsigned char) name[1]))
        digits = name + 1;
    if (!digits || !*digits)
        return -1;
    long n = 0;
    for (const char *d = digits; *d; d++) {
        if (!isdigit((unsigned char) *d) || n > 100000)
            return -1;
        n = n * 10 + (*d - '0');
    }
    return int(n);
}

Oid config_function(const char *name, int nargs)
{
    Oid argtypes[1] = {TEXTOID};
    List *fname = list_make2(makeString(pstrdup("plproxy")), makeString(pstrdup(name)));
    return LookupFuncName(fname, nargs, argtypes, true);
}

/* " of cluster "x"" when the cluster is known (not in the FDW validator) */
const char *of_cluster(const char *cluster)
{
    return cluster[0] ? psprintf(" of cluster \"%s\"", cluster) : "";
}

/* Every bad option value is reported the same way; hint says what is valid. */
pg_attribute_noreturn() void invalid_value(const char *cluster, const char *key, const char *val, const char *hint)
{
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("invalid value \"%s\" for option \"%s\"%s", val, key, of_cluster(cluster)),
                    errhint("%s", hint)));
    pg_unreachable();
}

int parse_int_option(const char *cluster, const char *key, const char *val)
{
    char *end;
    long v = val ? strtol(val, &end, 10) : 0;
    if (val && (*end != '\0' || v < 0 || v > INT_MAX))
        invalid_value(cluster, key, val, "The value must be a non-negative integer.");
    return int(v);
}

/* read_from: any (default) | standby | primary */
proto::ReadFrom parse_read_from(const char *cluster, const char *key, const char *val)
{
    if (!val || pg_strcasecmp(val, "any") == 0)
        return proto::ReadFrom::Any;
    if (pg_strcasecmp(val, "standby") == 0)
        return proto::ReadFrom::Standby;
    if (pg_strcasecmp(val, "primary") == 0)
        return proto::ReadFrom::Primary;
    invalid_value(cluster, key, val, "Use any, standby or primary.");
}

/* max_replica_lag: bytes, with an optional memory unit as in the settings
 * ('16MB'); 0 is no limit. */
int64 parse_bytes_option(const char *cluster, const char *key, const char *val)
{
    double v = 0;
    if (val && (!parse_real(val, &v, GUC_UNIT_BYTE, nullptr) || v < 0 || v >= double(PG_INT64_MAX)))
        invalid_value(cluster, key, val,
                      "Give a size in bytes, optionally with a unit (B, kB, MB, GB, TB), for example '16MB'; "
                      "0 means no limit.");
    return int64(v + 0.5); /* v >= 0: rounded to the nearest byte */
}

/* health_check_interval, _timeout: a duration in milliseconds, or with a
 * unit ('500ms', '2s'), in the settings' range; 0 means the setting. */
int parse_duration_option(const char *cluster, const char *key, const char *val)
{
    int ms = 0;
    if (val && (!parse_int(val, &ms, GUC_UNIT_MS, nullptr) || (ms != 0 && (ms < 100 || ms > 3600 * 1000))))
        invalid_value(cluster, key, val,
                      psprintf("Give a duration from 100ms to 1h (a number alone is in milliseconds), or 0 "
                               "to use bgw_proxy.%s.", key));
    return ms;
}

/* health_check_retries: 1 to 100, as the setting */
int parse_retries_option(const char *cluster, const char *key, const char *val)
{
    int n = 0;
    if (val && (!parse_int(val, &n, 0, nullptr) || n < 1 || n > 100))
        invalid_value(cluster, key, val, "Give an integer from 1 to 100.");
    return n;
}

bool parse_bool_option(const char *cluster, const char *key, const char *val)
{
    bool b = false;
    if (val && !parse_bool(val, &b))
        invalid_value(cluster, key, val, "Use on or off.");
    return b;
}

/* partition_N_weights or pN_weights: N, else -1. */
int weights_option_number(const char *name)
{
    static const char suffix[] = "_weights";
    size_t len = strlen(name), slen = sizeof(suffix) - 1;
    if (len <= slen || strcmp(name + len - slen, suffix) != 0)
        return -1;
    char *partition = pnstrdup(name, len - slen);
    int n = partition_option_number(partition);
    pfree(partition);
    return n;
}

/* A weights list, checked and written the way the worker reads it ("3,1"). */
char *normalised_weights(const char *cluster, const char *key, const char *val)
{
    int n = node_weights_parse(val, nullptr, 0);
    if (n < 0)
        invalid_value(cluster, key, val,
                      psprintf("Give one read weight per host of the partition, in the order of its "
                               "connection string: integers from 0 to %u separated by commas, for example '3,1'.",
                               kMaxNodeWeight));
    auto *w = (uint32_t *) palloc(sizeof(uint32_t) * n);
    (void) node_weights_parse(val, w, n);
    StringInfoData out;
    initStringInfo(&out);
    for (int i = 0; i < n; i++)
        appendStringInfo(&out, i ? ",%u" : "%u", w[i]);
    pfree(w);
    return out.data;
}

/* The weights of partition n must name each of its hosts once. */
void check_weights_count(const char *cluster, const char *key, const char *weights, int n, const char *connstr)
{
    int nweights = node_weights_parse(weights, nullptr, 0);
    int nhosts = conninfo_host_count(connstr);
    if (nhosts == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("option \"%s\"%s cannot be checked: the host, hostaddr and port lists of "
                               "partition %d do not have the same length", key, of_cluster(cluster), n),
                        errhint("A port list of one entry applies to every host.")));
    if (nweights != nhosts)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("option \"%s\"%s does not match the hosts of partition %d", key,
                               of_cluster(cluster), n),
                        errdetail("Weights given: %d. Hosts in the connection string: %d.", nweights, nhosts),
                        errhint("Give one weight per host of the partition's connection string, in the same "
                                "order.")));
}

pg_attribute_noreturn() void no_such_partition(const char *cluster, const char *key, int n)
{
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("option \"%s\"%s is for partition %d, which does not exist", key, of_cluster(cluster),
                           n),
                    errhint("Partitions are numbered from 0; partition_N_weights goes with partition N.")));
    pg_unreachable();
}

const char *const kOptionNames = "connection_lifetime, query_timeout, connect_timeout, disable_binary, "
                                 "default_user, modular_mapping, max_connections, read_from, max_replica_lag, "
                                 "health_check_interval, health_check_timeout, health_check_retries, "
                                 "partial_results, partition_N_weights";

bool is_cluster_option(const char *key)
{
    static const char *const names[] = {
        "connection_lifetime", "query_timeout", "connect_timeout", "disable_binary", "default_user",
        "modular_mapping", "disable_hashing", "max_connections", "read_from", "max_replica_lag",
        "health_check_interval", "health_check_timeout", "health_check_retries", "partial_results",
        /* PL/Proxy accepts these and does nothing with them; so do we */
        "statement_timeout", "keepalive_idle", "keepalive_interval", "keepalive_count"};
    for (const char *n : names)
        if (pg_strcasecmp(key, n) == 0)
            return true;
    return false;
}

/* One key/value of get_cluster_config, a server or its wrapper. Keys are
 * case-insensitive, as in PL/Proxy. */
void apply_option(ClusterConfig *c, const char *key_as_given, const char *val)
{
    char *key = pstrdup(key_as_given);
    for (char *k = key; *k; k++)
        *k = char(pg_tolower((unsigned char) *k));
    if (strcmp(key, "statement_timeout") == 0 || strncmp(key, "keepalive_", 10) == 0)
        (void) parse_int_option(c->name, key, val); /* accepted, like PL/Proxy, and unused */
    else if (strcmp(key, "connection_lifetime") == 0)
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
            invalid_value(c->name, key, val, "Use current_user or session_user.");
    } else if (strcmp(key, "read_from") == 0)
        c->read_from = parse_read_from(c->name, key, val);
    else if (strcmp(key, "max_replica_lag") == 0)
        c->max_replica_lag = parse_bytes_option(c->name, key, val);
    else if (strcmp(key, "health_check_interval") == 0)
        c->health_check_interval_ms = parse_duration_option(c->name, key, val);
    else if (strcmp(key, "health_check_timeout") == 0)
        c->health_check_timeout_ms = parse_duration_option(c->name, key, val);
    else if (strcmp(key, "health_check_retries") == 0)
        c->health_check_retries = parse_retries_option(c->name, key, val);
    else if (strcmp(key, "partial_results") == 0)
        c->partial_results = parse_bool_option(c->name, key, val);
    else if (int n = weights_option_number(key); n >= 0) {
        /* checked against the partition's hosts once all is loaded (check_connstrs) */
        char *w = val ? normalised_weights(c->name, key, val) : nullptr;
        if (n >= c->nparts)
            no_such_partition(c->name, key, n);
        c->weights[n] = w ? MemoryContextStrdup(c->cxt, w) : nullptr;
    } else
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("unknown option \"%s\" for cluster \"%s\"", key, c->name),
                        errhint("Known options: %s.", kOptionNames)));
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
    c->weights = (char **) MemoryContextAllocZero(c->cxt, sizeof(char *) * (c->nparts + 1));
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
        c->has_user[i] = connstr_names_user(c->partitions[i], ERRCODE_SYNTAX_ERROR,
                                            psprintf("partition %d of cluster \"%s\"", i, c->name));
        if (c->weights[i])
            check_weights_count(c->name, psprintf("partition_%d_weights", i), c->weights[i], i,
                                c->partitions[i]);
    }
}

/* The FDW of a server, if it is one of ours. */
bool is_our_server(ForeignServer *server)
{
    ForeignDataWrapper *fdw = GetForeignDataWrapper(server->fdwid);
    return strcmp(fdw->fdwname, "bgw_proxy") == 0 || strcmp(fdw->fdwname, "plproxy") == 0;
}

void load_from_server(ClusterConfig *c, ForeignServer *server)
{
    /* first: an invalidation arriving during the load must find us */
    c->serverid = server->serverid;
    ForeignDataWrapper *fdw = GetForeignDataWrapper(server->fdwid);
    MemoryContext old = MemoryContextSwitchTo(c->cxt);
    ListCell *lc;
    int max = -1;
    foreach (lc, server->options) {
        DefElem *d = (DefElem *) lfirst(lc);
        max = Max(max, partition_option_number(d->defname));
    }
    c->nparts = max + 1;
    c->partitions = (char **) palloc0(sizeof(char *) * (c->nparts + 1));
    c->has_user = (bool *) palloc0(sizeof(bool) * (c->nparts + 1));
    c->weights = (char **) palloc0(sizeof(char *) * (c->nparts + 1));
    /* wrapper options are defaults for every server */
    foreach (lc, fdw->options) {
        DefElem *d = (DefElem *) lfirst(lc);
        apply_option(c, d->defname, defGetString(d));
    }
    foreach (lc, server->options) {
        DefElem *d = (DefElem *) lfirst(lc);
        int n = partition_option_number(d->defname);
        if (n >= 0)
            c->partitions[n] = pstrdup(defGetString(d));
        else
            apply_option(c, d->defname, defGetString(d));
    }
    for (int i = 0; i < c->nparts; i++)
        if (!c->partitions[i])
            ereport(ERROR, (errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
                            errmsg("server \"%s\" has no option partition_%d", c->name, i),
                            errhint("Partitions are numbered from 0 without gaps.")));
    MemoryContextSwitchTo(old);
}

/* The user mapping for role on the server: the role's own, else PUBLIC. */
List *user_mapping_options(Oid role, Oid serverid)
{
    HeapTuple tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(role), ObjectIdGetDatum(serverid));
    if (!HeapTupleIsValid(tp))
        tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid), ObjectIdGetDatum(serverid));
    if (!HeapTupleIsValid(tp))
        return NIL;
    bool isnull;
    Datum d = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp, Anum_pg_user_mapping_umoptions, &isnull);
    List *opts = isnull ? NIL : untransformRelOptions(d);
    ReleaseSysCache(tp);
    return opts;
}

/* ---- the shared cluster cache (function-defined clusters) ---- */

void serialize(const ClusterConfig *c, StringInfoBuf &buf)
{
    wire::Writer<StringInfoBuf> w(buf);
    w.u32(uint32(c->nparts));
    w.u8(c->modular_mapping);
    w.u8(c->session_user);
    w.u8(c->disable_binary);
    w.u32(uint32(c->connect_timeout_ms));
    w.u32(uint32(c->query_timeout_ms));
    w.u32(uint32(c->connection_lifetime_s));
    w.u32(uint32(c->max_connections));
    w.u8(uint8(c->read_from));
    w.u64(uint64(c->max_replica_lag));
    w.u32(uint32(c->health_check_interval_ms));
    w.u32(uint32(c->health_check_timeout_ms));
    w.u32(uint32(c->health_check_retries));
    w.u8(c->partial_results);
    for (int i = 0; i < c->nparts; i++) {
        w.str(c->partitions[i]);
        w.str(c->weights[i]); /* "" for none */
    }
}

char *copy_span(MemoryContext cxt, const wire::Span &s)
{
    char *p = (char *) MemoryContextAlloc(cxt, s.len + 1);
    memcpy(p, s.data, s.len);
    p[s.len] = '\0';
    return p;
}

bool deserialize(ClusterConfig *c, const char *data, uint32 len)
{
    wire::Reader r(data, len);
    uint32 nparts, connect_ms, query_ms, lifetime, maxconn, hc_interval, hc_timeout, hc_retries;
    uint8 modular, session, nobinary, read_from, partial;
    uint64 max_lag;
    if (!r.u32(nparts) || !r.u8(modular) || !r.u8(session) || !r.u8(nobinary) || !r.u32(connect_ms) ||
        !r.u32(query_ms) || !r.u32(lifetime) || !r.u32(maxconn) || !r.u8(read_from) ||
        read_from > uint8(proto::ReadFrom::Primary) || !r.u64(max_lag) || !r.u32(hc_interval) ||
        !r.u32(hc_timeout) || !r.u32(hc_retries) || !r.u8(partial) || nparts > len)
        return false;
    c->nparts = int(nparts);
    c->modular_mapping = modular;
    c->session_user = session;
    c->disable_binary = nobinary;
    c->connect_timeout_ms = int(connect_ms);
    c->query_timeout_ms = int(query_ms);
    c->connection_lifetime_s = int(lifetime);
    c->max_connections = int(maxconn);
    c->read_from = proto::ReadFrom(read_from);
    c->max_replica_lag = int64(max_lag);
    c->health_check_interval_ms = int(hc_interval);
    c->health_check_timeout_ms = int(hc_timeout);
    c->health_check_retries = int(hc_retries);
    c->partial_results = partial;
    c->partitions = (char **) MemoryContextAllocZero(c->cxt, sizeof(char *) * (nparts + 1));
    c->has_user = (bool *) MemoryContextAllocZero(c->cxt, sizeof(bool) * (nparts + 1));
    c->weights = (char **) MemoryContextAllocZero(c->cxt, sizeof(char *) * (nparts + 1));
    for (uint32 i = 0; i < nparts; i++) {
        wire::Span conn, weights;
        if (!r.str(conn) || !r.str(weights))
            return false;
        c->partitions[i] = copy_span(c->cxt, conn);
        c->weights[i] = weights.len > 0 ? copy_span(c->cxt, weights) : nullptr;
    }
    return r.at_end();
}

SharedCluster *find_shared(const char *name)
{
    for (int i = 0; i < proxy_shared->nclusters; i++) {
        SharedCluster *s = shared_cluster(i);
        if (s->used && s->dbid == MyDatabaseId && strcmp(s->name, name) == 0)
            return s;
    }
    return nullptr;
}

/* Take the configuration another backend loaded for this version. */
bool load_from_shared(ClusterConfig *c, int32 version)
{
    if (!proxy_shared || proxy_shared->nclusters == 0)
        return false;
    char *copy = (char *) palloc(kClusterSlotData); /* not under the lock */
    uint32 len = 0;
    bool hit = false;
    LWLockAcquire(proxy_shared->lock, LW_SHARED);
    SharedCluster *s = find_shared(c->name);
    if (s && s->version == version) {
        len = s->len;
        memcpy(copy, s->data, len);
        hit = true;
    }
    LWLockRelease(proxy_shared->lock);
    bool ok = hit && deserialize(c, copy, len);
    pfree(copy);
    return ok;
}

/* Publish a configuration just loaded: replaces the same cluster's slot,
 * else takes a free one, else the one stored longest ago. */
void store_shared(const ClusterConfig *c)
{
    if (!proxy_shared || proxy_shared->nclusters == 0)
        return;
    StringInfoBuf buf;
    initStringInfo(&buf.si);
    serialize(c, buf);
    if (Size(buf.si.len) > kClusterSlotData)
        return; /* too large to share: every backend keeps its own copy */
    LWLockAcquire(proxy_shared->lock, LW_EXCLUSIVE);
    SharedCluster *s = find_shared(c->name);
    if (!s) {
        /* a free slot (stamp 0 sorts first), else the oldest */
        s = shared_cluster(0);
        for (int i = 0; i < proxy_shared->nclusters; i++) {
            SharedCluster *t = shared_cluster(i);
            if (!t->used) {
                s = t;
                break;
            }
            if (t->stamp < s->stamp)
                s = t;
        }
    }
    s->used = true;
    s->dbid = MyDatabaseId;
    strlcpy(s->name, c->name, sizeof(s->name));
    s->version = c->version;
    s->stamp = ++proxy_shared->cluster_stamp;
    s->len = uint32(buf.si.len);
    memcpy(s->data, buf.si.data, buf.si.len);
    LWLockRelease(proxy_shared->lock);
    pfree(buf.si.data);
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

bool connstr_names_user(const char *connstr, int sqlstate, const char *what)
{
    ConninfoError err;
    bool has_user = false;
    if (!conninfo_each(
            connstr, [&](const ConninfoOption &o) { has_user |= strcmp(o.keyword, "user") == 0 && o.val[0]; },
            &err))
        ereport(ERROR, (errcode(sqlstate), errmsg("invalid connection string in %s", what),
                        errdetail_internal("%s", err.text)));
    return has_user;
}

namespace {

/* The configuration functions, looked up once per session and again after
 * any change to pg_proc (CREATE, ALTER, DROP FUNCTION invalidate PROCOID). */
struct ConfigFunctions {
    bool valid;
    Oid version, partitions, config;
};
ConfigFunctions config_fns;

/* SELECT plproxy.get_cluster_version($1), prepared once and kept: the plan
 * cache re-plans it when the function changes, and the planner inlines a
 * SQL-language function, which a call through fmgr would parse anew in
 * every transaction. */
SPIPlanPtr version_plan = nullptr;
constexpr const char *kVersionQuery = "SELECT plproxy.get_cluster_version($1)";
bool version_not_simple = false; /* version_plan is not one expression (simple_query.h):
                                  * looked at again after a change to pg_proc */

void invalidate_config_functions(Datum arg, int cacheid, uint32 hashvalue)
{
    (void) arg;
    (void) cacheid;
    (void) hashvalue;
    config_fns.valid = false;
    version_not_simple = false;
}

const ConfigFunctions &config_functions()
{
    if (!config_fns.valid) {
        config_fns.version = config_function("get_cluster_version", 1);
        config_fns.partitions = config_function("get_cluster_partitions", 1);
        config_fns.config = config_function("get_cluster_config", 1);
        config_fns.valid = true;
    }
    return config_fns;
}

int32 version_value(const char *name, Datum v, bool isnull)
{
    if (isnull)
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                        errmsg("plproxy.get_cluster_version returned NULL for cluster \"%s\"", name)));
    return DatumGetInt32(v);
}

int32 call_version_function(const char *name)
{
    Datum arg = CStringGetTextDatum(name);
    if (version_plan) {
        /* one function call (or the SQL function's body, inlined): no
         * executor. Not an int4: SPI's path says what is wrong. */
        Oid argtype = TEXTOID;
        Datum v;
        bool isnull;
        Oid type;
        if (simple_query_eval(version_plan, kVersionQuery, &version_not_simple, INT4OID, 1, &argtype, &arg, nullptr,
                              &v, &isnull, &type))
            return version_value(name, v, isnull);
    }
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "bgw_proxy: SPI_connect failed");
    if (!version_plan) {
        Oid argtype = TEXTOID;
        SPIPlanPtr plan = SPI_prepare(kVersionQuery, 1, &argtype);
        if (!plan)
            elog(ERROR, "bgw_proxy: could not prepare the call of plproxy.get_cluster_version: %s",
                 SPI_result_code_string(SPI_result));
        if (SPI_keepplan(plan) != 0)
            elog(ERROR, "bgw_proxy: SPI_keepplan failed");
        version_plan = plan;
    }
    if (SPI_execute_plan(version_plan, &arg, nullptr, false, 1) != SPI_OK_SELECT || SPI_processed != 1 ||
        SPI_tuptable->tupdesc->natts != 1 || SPI_gettypeid(SPI_tuptable->tupdesc, 1) != INT4OID)
        ereport(ERROR, (errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
                        errmsg("plproxy.get_cluster_version must return one int4 value")));
    bool isnull;
    Datum v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
    int32 version = version_value(name, v, isnull);
    SPI_finish();
    return version;
}

/* The backend's cluster cache, created at first use; SQL/MED changes
 * invalidate its entries. */
void create_cache()
{
    if (!clusters) {
        HASHCTL ctl;
        memset(&ctl, 0, sizeof(ctl));
        ctl.keysize = NAMEDATALEN;
        ctl.entrysize = sizeof(ClusterConfig);
        ctl.hcxt = CacheMemoryContext;
        clusters = hash_create("bgw_proxy clusters", 16, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
        CacheRegisterSyscacheCallback(FOREIGNSERVEROID, invalidate_sqlmed, (Datum) 0);
        CacheRegisterSyscacheCallback(USERMAPPINGOID, invalidate_sqlmed, (Datum) 0);
        CacheRegisterSyscacheCallback(FOREIGNDATAWRAPPEROID, invalidate_sqlmed, (Datum) 0);
        CacheRegisterSyscacheCallback(PROCOID, invalidate_config_functions, (Datum) 0);
    }
}

/* A cluster defined by the configuration functions: checks the caller may
 * run them and returns its current version (called on every call). */
int32 function_cluster_version(const char *name, Oid *partitions_fn)
{
    const ConfigFunctions &fns = config_functions();
    Oid version_fn = fns.version;
    *partitions_fn = fns.partitions;
    if (!OidIsValid(version_fn) || !OidIsValid(*partitions_fn))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("bgw_proxy cluster \"%s\" is not defined", name),
                        errhint("Create a server of the bgw_proxy foreign-data wrapper, or define "
                                "plproxy.get_cluster_version(text) and plproxy.get_cluster_partitions(text).")));
    /* the caller must be allowed to run the configuration functions,
     * even when their result comes from a cache */
    for (Oid fn : {version_fn, *partitions_fn, fns.config}) {
        if (!OidIsValid(fn))
            continue;
        AclResult acl = pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE);
        if (acl != ACLCHECK_OK)
            aclcheck_error(acl, OBJECT_FUNCTION, get_func_name(fn));
    }
    return call_version_function(name);
}

/* (Re)load an entry: a failure leaves it empty, so the next call retries. */
void load_entry(ClusterConfig *c, ForeignServer *server, int32 version, Oid partitions_fn)
{
    reset_entry(c);
    c->cxt = AllocSetContextCreate(CacheMemoryContext, "bgw_proxy cluster", ALLOCSET_SMALL_SIZES);
    PG_TRY();
    {
        bool share = false;
        if (server) {
            load_from_server(c, server);
        } else if (load_from_shared(c, version)) {
            c->version = version; /* another backend loaded this version */
        } else {
            if (SPI_connect() != SPI_OK_CONNECT)
                elog(ERROR, "bgw_proxy: SPI_connect failed");
            load_from_functions(c, partitions_fn);
            SPI_finish();
            c->version = version;
            share = true;
        }
        check_partition_count(c);
        check_connstrs(c);
        if (share)
            store_shared(c); /* only a configuration that passed its checks */
    }
    PG_CATCH();
    {
        reset_entry(c);
        PG_RE_THROW();
    }
    PG_END_TRY();
}

/* The caller may use the cluster's server (USAGE), as for any foreign server. */
void check_server_usage(Oid serverid, const char *name)
{
    AclResult acl = pg_foreign_server_aclcheck(serverid, GetUserId(), ACL_USAGE);
    if (acl != ACLCHECK_OK)
        aclcheck_error(acl, OBJECT_FOREIGN_SERVER, name);
}

} // namespace

ClusterConfig *cluster_get(const char *name)
{
    if (strlen(name) >= NAMEDATALEN)
        ereport(ERROR, (errcode(ERRCODE_NAME_TOO_LONG), errmsg("cluster name \"%s\" is too long", name)));
    create_cache();

    /* the common case, a SQL/MED cluster loaded and still current: its
     * server's OID is all it takes (an entry is loaded only from a server
     * of ours, and any change to the server marks it stale) */
    Oid serverid = get_foreign_server_oid(name, true);
    if (OidIsValid(serverid)) {
        auto *c = static_cast<ClusterConfig *>(hash_search(clusters, name, HASH_FIND, nullptr));
        if (c && c->cxt && c->serverid == serverid && !c->stale) {
            check_server_usage(serverid, name);
            return c;
        }
    }

    /* SQL/MED first: it wins over the configuration functions */
    ForeignServer *server = OidIsValid(serverid) ? GetForeignServer(serverid) : nullptr;
    if (server && !is_our_server(server))
        server = nullptr;
    Oid partitions_fn = InvalidOid;
    int32 version = 0;
    if (server) {
        check_server_usage(server->serverid, server->servername);
    } else {
        version = function_cluster_version(name, &partitions_fn);
    }

    bool found;
    auto *c = static_cast<ClusterConfig *>(hash_search(clusters, name, HASH_ENTER, &found));
    if (!found) {
        /* hash_search leaves everything but the key uninitialised */
        static_assert(offsetof(ClusterConfig, name) == 0, "the key comes first");
        memset(reinterpret_cast<char *>(c) + NAMEDATALEN, 0, sizeof(*c) - NAMEDATALEN);
    } else if (c->cxt && (server ? (c->serverid == server->serverid && !c->stale)
                                 : (!OidIsValid(c->serverid) && c->version == version))) {
        return c;
    }
    load_entry(c, server, version, partitions_fn);
    return c;
}

void cluster_validate_options(List *options, Oid catalog)
{
    ClusterConfig scratch; /* values are checked by applying them to it */
    memset(&scratch, 0, sizeof(scratch));
    int nparts = 0;
    int max = -1;
    Bitmapset *seen = nullptr;
    Bitmapset *weighted = nullptr;
    List *partitions = NIL;      /* the partition_N options */
    List *weights = NIL;         /* the partition_N_weights options, checked against them at the end */
    ListCell *lc;
    foreach (lc, options) {
        DefElem *d = (DefElem *) lfirst(lc);
        const char *val = defGetString(d);
        if (catalog == UserMappingRelationId) {
            if (strcmp(d->defname, "user") != 0 && strcmp(d->defname, "password") != 0)
                ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                                errmsg("invalid option \"%s\" for a bgw_proxy user mapping", d->defname),
                                errhint("Valid options are user and password.")));
            continue;
        }
        int n = partition_option_number(d->defname);
        if (n >= 0) {
            if (catalog != ForeignServerRelationId)
                ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                                errmsg("partitions are options of a server, not of \"%s\"", d->defname)));
            (void) connstr_names_user(val, ERRCODE_FDW_INVALID_STRING_FORMAT,
                                      psprintf("option \"%s\"", d->defname));
            if (bms_is_member(n, seen))
                ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                                errmsg("duplicate partition number %d (option \"%s\")", n, d->defname)));
            seen = bms_add_member(seen, n);
            nparts++;
            max = Max(max, n);
            partitions = lappend(partitions, d);
            continue;
        }
        n = weights_option_number(d->defname);
        if (n >= 0) {
            if (catalog != ForeignServerRelationId)
                ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                                errmsg("option \"%s\" is an option of a server, not of a foreign-data wrapper",
                                       d->defname)));
            (void) normalised_weights("", d->defname, val);
            if (bms_is_member(n, weighted))
                ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                                errmsg("duplicate weights for partition %d (option \"%s\")", n, d->defname)));
            weighted = bms_add_member(weighted, n);
            weights = lappend(weights, d);
            continue;
        }
        /* a cluster option: the same checks as at load time */
        if (!is_cluster_option(d->defname))
            ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                            errmsg("invalid option \"%s\"", d->defname),
                            errhint("Valid options are partition_N and %s.", kOptionNames)));
        apply_option(&scratch, d->defname, val);
    }
    if (catalog == ForeignServerRelationId && nparts > 0 && max != nparts - 1)
        ereport(ERROR, (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                        errmsg("partition options must be numbered 0 to %d without gaps or duplicates", nparts - 1)));
    foreach (lc, weights) {
        DefElem *w = (DefElem *) lfirst(lc);
        int n = weights_option_number(w->defname);
        DefElem *partition = nullptr;
        ListCell *pc;
        foreach (pc, partitions)
            if (partition_option_number(((DefElem *) lfirst(pc))->defname) == n)
                partition = (DefElem *) lfirst(pc);
        if (!partition)
            no_such_partition("", w->defname, n);
        check_weights_count("", w->defname, defGetString(w), n, defGetString(partition));
    }
}

int cluster_partition_for_hash(const ClusterConfig *c, int64 hash)
{
    if (c->modular_mapping) {
        int64 m = hash % c->nparts;
        return int(m < 0 ? -m : m);
    }
    return int(hash & (c->nparts - 1));
}

ClusterLogin cluster_login(ClusterConfig *c, const char **route_key)
{
    Oid role = c->session_user ? GetSessionUserId() : GetUserId();
    if (!c->cached_role_name || c->cached_role != role) {
        char *rolename = GetUserNameFromId(role, false); /* the call's memory */
        const char *map_user = nullptr;
        const char *map_password = nullptr;
        if (OidIsValid(c->serverid)) {
            /* SQL/MED: the user mapping says as whom, with which password */
            ListCell *lc;
            foreach (lc, user_mapping_options(role, c->serverid)) {
                DefElem *d = (DefElem *) lfirst(lc);
                if (strcmp(d->defname, "user") == 0)
                    map_user = defGetString(d);
                else if (strcmp(d->defname, "password") == 0)
                    map_password = defGetString(d);
            }
        }
        /* a role switch replaces the previous role's strings */
        for (char *p : {c->cached_role_name, c->cached_map_user, c->cached_map_password, c->cached_route_key})
            if (p)
                pfree(p);
        c->cached_role_name = MemoryContextStrdup(c->cxt, rolename);
        c->cached_map_user = map_user ? MemoryContextStrdup(c->cxt, map_user) : nullptr;
        c->cached_map_password = map_password ? MemoryContextStrdup(c->cxt, map_password) : nullptr;
        c->cached_route_key = MemoryContextStrdup(c->cxt, psprintf("cluster %s|%u", c->name, role));
        c->cached_role = role;
    }
    /* Any role with USAGE may create its own user mapping: naming another
     * remote user must not work without that user's password, whatever the
     * remote's trust or peer rules say (as in postgres_fdw), unless the
     * administrator turned that off (PL/Proxy never checked). */
    bool require = guc_mapping_password_required && c->cached_map_user &&
                   strcmp(c->cached_map_user, c->cached_role_name) != 0 && !superuser_arg(role);
    if (require && !c->cached_map_password)
        ereport(ERROR, (errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
                        errmsg("password is required to connect to cluster \"%s\" as \"%s\"", c->name,
                               c->cached_map_user),
                        errdetail("Non-superusers must give a password in the user mapping to connect as "
                                  "another user."),
                        errhint("Add the password to the user mapping, or (if every remote authenticates "
                                "such users itself) set bgw_proxy.mapping_password_required = off.")));
    *route_key = c->cached_route_key;
    return ClusterLogin{c->cached_role_name, c->cached_map_user, c->cached_map_password, require};
}

} // namespace bgw
