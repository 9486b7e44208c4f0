/*
 * slot_calls.h — the worker's side of the request slot protocol (shmem.h):
 * pick a call up from its ticket, read its request, hand its targets to the
 * pool, send what they produce back, and release the slot.
 */
#pragma once

#include "shared/submit_queue.hpp"

namespace bgw {

/* A ticket from our queue: take the slot if it is still the call the
 * ticket was made for (SUBMITTED -> RUNNING). */
void pick_up(Ticket t);

/* Move every call in flight as far as it can go without waiting. One
 * call's failure ends that call only. */
void step_all_calls();

/* At worker exit: every call in flight is handed back to its backend as
 * failed (DONE without a final message). Must not raise. */
void fail_calls_at_exit();

/* Slots a previous incarnation of this worker held when it died without
 * its exit callback: their backends are told the call failed. */
void reclaim_orphaned_slots();

} // namespace bgw
