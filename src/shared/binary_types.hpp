/*
 * binary_types.hpp — which result types may travel in binary.
 *
 * Built-in types only (the same OID on every server), whose binary form has
 * no embedded OIDs or text in the client encoding (text-like types gain
 * nothing and would need encoding care), and no value range added since
 * PostgreSQL 10 that an older receiver would misread (interval gained
 * infinities in 17: not listed). Arrays of them carry their element OID,
 * which is built-in too. Both sides check it: the worker gives it to the pool
 * as its binary policy, the backend checks it again before decoding.
 *
 * Pure C++: no PostgreSQL header.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cstdint>

namespace bgw {

inline bool binary_safe_type(uint32_t type)
{
    switch (type) {
    case 16:   /* bool */
    case 17:   /* bytea */
    case 20:   /* int8 */
    case 21:   /* int2 */
    case 23:   /* int4 */
    case 26:   /* oid */
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1082: /* date */
    case 1083: /* time */
    case 1114: /* timestamp */
    case 1184: /* timestamptz */
    case 1700: /* numeric */
    case 2950: /* uuid */
    case 1000: /* bool[] */
    case 1001: /* bytea[] */
    case 1005: /* int2[] */
    case 1007: /* int4[] */
    case 1016: /* int8[] */
    case 1021: /* float4[] */
    case 1022: /* float8[] */
    case 1028: /* oid[] */
    case 1115: /* timestamp[] */
    case 1182: /* date[] */
    case 1183: /* time[] */
    case 1185: /* timestamptz[] */
    case 1231: /* numeric[] */
    case 2951: /* uuid[] */
        return true;
    default:
        return false;
    }
}

} // namespace bgw
