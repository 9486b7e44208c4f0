/*
 * string_info_buf.h — a StringInfo that the wire codec can write to
 * (wire::Writer needs only append()). Backend code: palloc'd, no destructor.
 */
#pragma once

#include "common/pg_headers.h"

namespace bgw {

struct StringInfoBuf {
    StringInfoData si;
    void append(const char *p, size_t n) { appendBinaryStringInfo(&si, p, int(n)); }
};

} // namespace bgw
