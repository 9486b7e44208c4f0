/*
 * cluster_gate.h — the backend's side of pauses. Every cluster call passes
 * the gate of its cluster before it reads the cluster's configuration, and
 * waits there while bgw_proxy_pause() holds the cluster, or one of the
 * partitions the call runs on. The protocol (the gate fields of a request
 * slot, the pause entries) is in shared/shmem.h.
 *
 * Backend code in the PostgreSQL style (ereport, no C++ destructors).
 */
#pragma once

#include "common/pg_headers.h"

namespace bgw {

/* Before the configuration of `cluster` is read: this backend's call is
 * published as running for the cluster (every partition, until
 * gate_admit narrows it). Waits here, in arrival order, while the whole
 * cluster is paused; bounded by bgw_proxy.pool_wait_timeout, and by
 * statement_timeout and cancels. */
void gate_enter(const char *cluster);

/* After routing: the partitions the call runs on. True: go on. False: one
 * of them is paused; this backend has left the gate, waited for the
 * resume, and must route again from gate_enter() (the configuration may
 * have changed meanwhile). */
bool gate_admit(const int *partitions, int n);

/* Gates nest when a proxy function is called while another one is routed
 * (a RUN ON function that calls one): only the outermost call is gated.
 * The handler takes the depth before a call and leaves to it afterwards,
 * on success or error. */
int gate_depth(void);
void gate_leave_to(int depth);

/* The pausing side: calls of the cluster (cluster_gate_hash()), of the
 * partition when >= 0, that run now: their backend is past the gate, or
 * their slot is still with a worker (an abandoned call runs until its
 * worker releases it). Read without a lock; exact once a pause of that
 * scope is published (shmem.h). */
int gate_calls_running(uint64 hash, int32 partition);

} // namespace bgw
