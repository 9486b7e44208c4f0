/*
 * cluster.h — cluster configuration: the partitions of a CLUSTER and its
 * options, from the PL/Proxy configuration functions
 * (plproxy.get_cluster_version / _partitions / _config).
 *
 * Two sources, as in PL/Proxy; SQL/MED wins when both define a name:
 *  - a foreign server of the bgw_proxy (or plproxy) foreign-data wrapper:
 *    options partition_N (or pN) and cluster options; user mappings give
 *    user/password; USAGE on the server is required;
 *  - the configuration functions plproxy.get_cluster_version / _partitions
 *    / _config.
 *
 * Loaded configurations are cached per backend, keyed by cluster name. A
 * function-defined cluster is reloaded when get_cluster_version (called on
 * every call, as PL/Proxy does) returns another number; a SQL/MED one when
 * a server or user mapping changes (syscache invalidation).
 */
#pragma once

#include "pg_headers.h"

namespace bgw {

struct ClusterConfig {
    char name[NAMEDATALEN];      /* hash key */
    MemoryContext cxt;           /* owns everything below */
    int32 version;
    Oid serverid;                /* SQL/MED: the foreign server, else InvalidOid */
    bool stale;                  /* SQL/MED: a server or mapping changed */
    int nparts;
    char **partitions;           /* connection strings, partition order */
    bool *has_user;              /* per partition: the string names a user */

    /* options (0 = use the bgw_proxy.* setting) */
    bool modular_mapping;        /* index = abs(hash % n); else hash & (n - 1) */
    bool session_user;           /* default_user = session_user */
    bool disable_binary;
    int connect_timeout_ms;
    int query_timeout_ms;
    int connection_lifetime_s;
    int max_connections;         /* per partition and role */

    /* final connection strings for the last role (user= added) */
    Oid cached_role;
    char **cached_connstrs;
    char *cached_route_key;
};

/* The configuration of a cluster, loaded or refreshed as needed. */
ClusterConfig *cluster_get(const char *name);

/* The partition a hash value maps to. */
int cluster_partition_for_hash(const ClusterConfig *c, int64 hash);

/* Final connection strings for the calling role; see ClusterConfig. */
char **cluster_connstrs(ClusterConfig *c, const char **route_key);

/* libpq's error text (from PQconninfoParse) as a palloc'd string without
 * its trailing newline; frees the original. */
char *take_libpq_error(char *err);

/* Appends ` keyword='value'` (quoted for libpq) to buf. */
void append_conn_option(StringInfo buf, const char *keyword, const char *value);

/* Validates options of the bgw_proxy foreign-data wrapper, its servers and
 * user mappings (the FDW validator). */
void cluster_validate_options(List *options, Oid catalog);

} // namespace bgw
