/*
 * pure_cxx.h — included first by every module that must stay free of
 * PostgreSQL server headers (so it can be unit-tested on its own and never
 * sees PostgreSQL's longjmp-based error handling). Including a server header
 * before it is a compile error.
 */
#pragma once

#ifdef BGW_PG_HEADERS_INCLUDED
#error "a pure C++ bgw_proxy module must not include PostgreSQL server headers"
#endif
#ifdef PG_VERSION_NUM
#error "a pure C++ bgw_proxy module must not include PostgreSQL server headers"
#endif
