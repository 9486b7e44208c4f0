/*
 * gauges.h — when the worker publishes what it holds: its WorkerState
 * gauges and the pg_stat_bgw_proxy entries of its pools.
 *
 * Publishing walks the worker's pools, so it is not done on every turn of
 * the loop: at most every kPublishMs while anything happens, and at once
 * when the last call in flight ends, before its backend is told (so a
 * session that has seen its call end reads gauges that include it).
 */
#pragma once

namespace bgw {

constexpr long kPublishMs = 5;

/* Something moved (a socket event, a call, a timer): the gauges may be stale. */
void gauges_touched();

/* Publish now if stale and due (or `now_if_last` and no call is in flight
 * any more: called when a call has been counted as ended). */
void gauges_publish(bool now_if_last);

/* The loop's wait, shortened so stale gauges wait at most kPublishMs. */
long gauges_wait_ms(long timeout_ms);

} // namespace bgw
