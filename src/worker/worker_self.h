/*
 * worker_self.h — what one bgw_proxy worker process holds: its queue's
 * index, its connection pool, its statistics, the calls in flight and what
 * it remembers of the configurations it has seen.
 *
 * Worker code: C++ objects; PostgreSQL only through pg_call().
 */
#pragma once

#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pool/conn_pool.hpp"
#include "worker/lender.h"
#include "worker/socket_set.h"
#include "worker/pool_stats_worker.h"
#include "worker/call_task.h"
#include "worker/node_router.h"
#include "shared/shmem.h"

namespace bgw {

/* What a partition's last call was made with (Worker.last_config). */
struct ConfigSeen {
    std::string key;                 /* the pool key */
    int64 version = -1;              /* a function-defined cluster's version; -1: SQL/MED */
    std::string cluster;             /* for bgw_proxy_reconnect() */
    uint32 partition = 0;
};

struct Worker {
    int index = -1;
    uint32 incarnation = 0;
    WorkerState *state = nullptr;
    Pool pool;
    StatBook stats;
    std::vector<std::unique_ptr<Call>> calls;
    /* per (database, role, cluster, partition, remote user): the pool key
     * and cluster configuration its last call used (retirement.cpp) */
    std::unordered_map<std::string, ConfigSeen> last_config;
    uint64 drop_epoch = 0;           /* ProxyShared.drop_epoch last acted on */
    uint64 command_epoch = 0;        /* ProxyShared.command_epoch last carried out */
    NodeRouter router;               /* nodes of multi-host partitions, their checks */
    Lender lender;                   /* its idle connections, lent to backends (lend_table.h) */
    SocketSet sockets;               /* the pooled sockets, kept by the pool (event_loop.cpp) */
    std::vector<std::tuple<int, int, uint64_t>> wes_sockets; /* without epoll: what the wait set was built for */
};

/* This process's worker. Never destroyed: the exit callback uses it after
 * the loop is gone. NULL outside a worker. */
extern Worker *self;

} // namespace bgw
