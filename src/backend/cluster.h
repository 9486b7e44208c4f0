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

#include "shared/slot_protocol.hpp"

#include "common/pg_headers.h"

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

    bool partial_results;        /* RUN ON ALL: rows of the partitions that answered */

    /* replicas and health (README "Replicas and health"): they matter for
     * partitions whose connection string names several hosts */
    proto::ReadFrom read_from;   /* which nodes serve reads */
    int64 max_replica_lag;       /* bytes a standby may lag and still serve reads; 0: off */
    int health_check_interval_ms;/* 0: bgw_proxy.health_check_interval */
    int health_check_timeout_ms; /* 0: bgw_proxy.health_check_timeout */
    int health_check_retries;    /* 0: bgw_proxy.health_check_retries */
    char **weights;              /* per partition: its nodes' read weights, "3,1" (one per
                                  * host, checked), or NULL: 1 each (partition_N_weights) */

    /* as whom, for the last role that called (see cluster_login) */
    Oid cached_role;
    char *cached_role_name;
    char *cached_map_user;
    char *cached_map_password;
    char *cached_route_key;
};

/* As whom a cluster's partitions are reached by the calling role. */
struct ClusterLogin {
    const char *role;        /* the calling role (current_user or session_user) */
    const char *user;        /* from the user mapping: for every partition */
    const char *password;    /* from the user mapping */
    bool require_password;   /* a non-superuser mapped to another user: the
                              * remote must authenticate with the password */
};

/* The configuration of a cluster, loaded or refreshed as needed. */
ClusterConfig *cluster_get(const char *name);

/* The partition a hash value maps to. */
int cluster_partition_for_hash(const ClusterConfig *c, int64 hash);

/* The login for the calling role: a partition is reached as `user` if set,
 * else as the user its connection string names, else as `role`. */
ClusterLogin cluster_login(ClusterConfig *c, const char **route_key);

/* Checks a connection string (errors as "invalid connection string in
 * <what>", with sqlstate) and says whether it names a user. */
bool connstr_names_user(const char *connstr, int sqlstate, const char *what);

/* Validates options of the bgw_proxy foreign-data wrapper, its servers and
 * user mappings (the FDW validator). */
void cluster_validate_options(List *options, Oid catalog);

} // namespace bgw
