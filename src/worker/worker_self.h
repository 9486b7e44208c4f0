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
#include "worker/socket_set.h"
#include "worker/pool_stats_worker.h"
#include "worker/call_task.h"
#include "shared/shmem.h"

namespace bgw {

struct Worker {
    int index = -1;
    uint32 incarnation = 0;
    WorkerState *state = nullptr;
    Pool pool;
    StatBook stats;
    std::vector<std::unique_ptr<Call>> calls;
    /* per (database, role, cluster, partition, remote user): the pool key
     * and cluster configuration its last call used (retirement.cpp) */
    std::unordered_map<std::string, std::pair<std::string, int64>> last_config;
    uint64 drop_epoch = 0;           /* ProxyShared.drop_epoch last acted on */
    SocketSet sockets;               /* the pooled sockets, kept by the pool (event_loop.cpp) */
    std::vector<std::tuple<int, int, uint64_t>> wes_sockets; /* without epoll: what the wait set was built for */
};

/* This process's worker. Never destroyed: the exit callback uses it after
 * the loop is gone. NULL outside a worker. */
extern Worker *self;

} // namespace bgw
