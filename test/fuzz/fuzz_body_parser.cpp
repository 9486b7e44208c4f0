/*
 * fuzz_body_parser.cpp — libFuzzer target for the proxy-function body
 * parser (backend/body_parser.hpp).
 *
 * The input is a function body, parsed with standard_conforming_strings on
 * and off. Besides "never crashes", it checks what the header promises
 * callers, since compile.cpp relies on it to build error positions and to
 * substitute arguments: every SQL fragment is the body's bytes at its
 * position, every argument reference points at itself both in its fragment
 * and in the body, and an error position lies within the body.
 */
#include "backend/body_parser.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace bgw;

namespace {

/* A broken promise is a crash, so that libFuzzer keeps the input. */
void require(bool cond)
{
    if (!cond)
        abort();
}

void check_fragment(const std::string &body, const SqlFragment &f)
{
    require(f.body_pos <= body.size() && f.text.size() <= body.size() - f.body_pos);
    require(body.compare(f.body_pos, f.text.size(), f.text) == 0);
    for (const ArgRef &a : f.args) {
        require(a.offset <= f.text.size() && a.length <= f.text.size() - a.offset);
        require(a.body_pos == f.body_pos + a.offset);
        require(a.number > 0 || !a.name.empty() || a.quoted);
    }
}

void check_value(const std::string &body, const Value &v)
{
    require(v.body_pos <= body.size());
    if (v.kind == ValueKind::Function)
        check_fragment(body, v.call);
}

void check_parsed(const std::string &body, const ParsedBody &p)
{
    if (p.has_cluster)
        check_value(body, p.cluster);
    if (p.has_connect)
        check_value(body, p.connect);
    if (p.has_run)
        check_value(body, p.run);
    if (p.has_select)
        check_fragment(body, p.select);
    for (const ArgRef &a : p.split_args) {
        /* SPLIT lists are in the body itself */
        require(a.offset == a.body_pos);
        require(a.body_pos <= body.size() && a.length <= body.size() - a.body_pos);
    }
    if (p.has_target)
        require(!p.target.empty() && !p.target_parts.empty());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const std::string body(reinterpret_cast<const char *>(data), size);
    for (bool scs : {true, false}) {
        ParsedBody parsed;
        ParseError err;
        if (parse_body(body, parsed, err, scs))
            check_parsed(body, parsed);
        else
            require(err.position <= body.size() && !err.message.empty());
    }
    return 0;
}
