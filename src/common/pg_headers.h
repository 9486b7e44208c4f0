/*
 * pg_headers.h — the one way a bgw_proxy source file includes PostgreSQL.
 *
 * PostgreSQL's port.h redefines snprintf, printf, qsort and friends as
 * macros, which breaks the C++ standard library and Boost if they are
 * included afterwards. So every file that talks to the server includes this
 * header LAST among its includes: standard and Boost headers first, then the
 * server headers, all inside extern "C" because they are C.
 *
 * Pure C++ modules (the parser, the queue, the slot protocol, the pool) must not
 * include this file; pure_cxx.h enforces that.
 */
#pragma once

#define BGW_PG_HEADERS_INCLUDED 1

/* standard headers the backend files use, before port.h can interfere */
#include <initializer_list>

extern "C" {
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "nodes/bitmapset.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procsignal.h"
#include "storage/shm_mq.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"
}
