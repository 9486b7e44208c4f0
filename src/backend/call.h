/*
 * call.h — the backend's side of a call: hand it to a worker through this
 * backend's request slot and receive what comes back.
 *
 * Backend code in the PostgreSQL style: palloc'd data, ereport for errors,
 * no C++ object with a destructor in any frame (see cxx_boundary.h).
 */
#pragma once

#include "shared/slot_protocol.hpp"

#include "common/pg_headers.h"

namespace bgw {

struct CallTarget {
    uint32 partition;
    const char *connstr;   /* as configured */
    const char *user;      /* NULL: as the connection string says */
    const char *password;  /* NULL: none (from a user mapping) */
    bool require_password; /* fail unless the remote asked for the password */
    const char *weights;   /* NULL: 1 for each node; else "3,1": the read weight of each
                            * host of a multi-host connstr (cluster option partition_N_weights) */
    int nparams;
    const char **values;   /* text form; NULL entry = SQL NULL */
};

struct CallRequest {
    const char *function_name;   /* for error context */
    bool plproxy_messages;       /* relay remote errors and notices as "f(n): [db] REMOTE ERROR: msg" */
    int nargs;                   /* the n of that form */
    const char *cluster_name;    /* NULL for CONNECT: names the statistics entry */
    int64 config_version;        /* a function-defined cluster's version; -1: SQL/MED or CONNECT */
    bool disable_binary;         /* results in text only */
    const char *query;
    int connect_timeout_ms;      /* 0: none */
    int query_timeout_ms;        /* 0: none */
    int max_connections;         /* per pool; 0: bgw_proxy.max_pool_connections */
    int connection_lifetime_s;   /* 0: none */
    /* Replicas and health (README "Replicas and health"; only partitions
     * whose connection string names several hosts have nodes) */
    bool read;                   /* the function is STABLE or IMMUTABLE (LANGUAGE bgw_proxy) */
    proto::ReadFrom read_from;   /* cluster option read_from */
    int64 max_replica_lag;       /* bytes; 0: off */
    int health_check_interval_ms;
    int health_check_timeout_ms;
    int health_check_retries;
    bool partial_results;        /* RUN ON ALL: a failed partition is a WARNING, not an error */
    int nresult_columns;         /* as declared: binary results only where they match */
    const char **result_names;   /* "" for a scalar result */
    Oid *result_types;
    int ntargets;
    CallTarget *targets;
    const char *route_key;       /* its home worker (workers.h: pick_worker) */
};

/* Called once per row with its fields (valid until the callback returns). */
typedef void (*RowCallback)(void *arg, int target, int nfields, const wire::Span *fields);
/* Called once per target with its columns, before its rows: names, the
 * remote type OIDs, and the format (0 text, 1 binary) their values come in. */
typedef void (*DescribeCallback)(void *arg, int target, int ncolumns, const proto::Column *columns);

/* Called when a target has sent all its rows. */
typedef void (*TargetDoneCallback)(void *arg, int target);

struct ResultSink {
    DescribeCallback describe;
    RowCallback row;
    TargetDoneCallback target_done;
    void *arg;
};

/* Runs the call to completion; every row goes to on_row. Remote errors are
 * re-raised here with their fields; any error (including one raised by
 * on_row, or a cancel) abandons the call so the worker cancels the remote
 * statement and frees the slot. */
void call_run(const CallRequest *req, const ResultSink *sink);

/* This backend's request slot, once its previous call (abandoned, still
 * being cancelled by its worker) has released it: waits for that, up to
 * bgw_proxy.worker_wait_timeout. */
struct RequestSlot;
RequestSlot *call_free_slot(void);

/* This backend's index among the RequestSlots (shmem.h); raises if none. */
int call_slot_index(void);

/* Registered once per backend: an exiting backend abandons its call. */
void call_register_exit_hook(void);

/* A remote error or notice, palloc'd. */
struct RemoteMessage {
    char sqlstate[6];
    char *message, *detail, *hint, *context, *severity; /* NULL when empty */
};

/* Re-raise a remote error (ERROR; a remote FATAL or PANIC as a lost
 * connection, 08006) or relay a notice at its level, with the target's
 * context; the message is freed when it returns. */
void call_raise_remote(const CallRequest *req, int target, bool notice, RemoteMessage &m);

} // namespace bgw
