/*
 * event_loop.h — the worker's loop: take calls from the queue, move them
 * and the pool along, publish gauges, wait for the next event.
 */
#pragma once

namespace bgw {

/* Pool limits from the GUCs (at start and after a reload). */
void apply_limits();

/* Runs until SIGTERM; PostgreSQL errors arrive as PgError exceptions. */
void run_loop();

} // namespace bgw
