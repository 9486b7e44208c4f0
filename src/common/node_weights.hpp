/*
 * node_weights.hpp — the read weights of a multi-host partition's nodes,
 * as the cluster option partition_N_weights gives them: "3,1" (one
 * non-negative integer per host of the partition's connection string, in
 * its order; spaces around the numbers are allowed). The backend checks the
 * option with it and sends it on normalised ("3,1"); the worker reads that.
 *
 * Pure C++, no allocation, nothing thrown: backend code may call it.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cstdint>

namespace bgw {

constexpr uint32_t kMaxNodeWeight = 1000000;

/* The number of weights in text (>= 1), storing the first max of them in
 * out (out may be null when max is 0); -1 when text is not a comma-separated
 * list of integers from 0 to kMaxNodeWeight. */
inline int node_weights_parse(const char *text, uint32_t *out, int max)
{
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    const char *p = text;
    int n = 0;
    for (;;) {
        while (space(*p))
            p++;
        if (*p < '0' || *p > '9')
            return -1; /* a weight is missing (empty text, ",,", a sign, a trailing comma) */
        uint32_t v = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + uint32_t(*p - '0');
            if (v > kMaxNodeWeight)
                return -1;
        }
        if (n < max)
            out[n] = v;
        n++;
        while (space(*p))
            p++;
        if (*p == '\0')
            return n;
        if (*p != ',')
            return -1;
        p++;
    }
}

} // namespace bgw
