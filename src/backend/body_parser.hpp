/*
 * body_parser.hpp — lexer and parser for the body of a proxy function
 * (the PL/Proxy language, SPEC §3):
 *
 *   CLUSTER 'name' | func(args);
 *   CONNECT 'connstr' | func(args) | argname | $n;
 *   RUN ON ALL | ANY | <integer> | func(args) | argname | $n;
 *   SPLIT ALL | arg [, arg ...];
 *   TARGET [schema.]name;
 *   SELECT ...;
 *
 * The parser only checks syntax. It knows nothing about the function's
 * arguments, so it reports every identifier that could name one (ArgRef) and
 * leaves the decision to the caller, which also checks which statements are
 * required or incompatible (CLUSTER vs CONNECT, ...).
 *
 * SQL fragments (SELECT text, function-call text) are copied from the body
 * byte for byte, comments included: text[i] == body[fragment.body_pos + i].
 * Nothing is normalised, so optimizer-hint comments survive and positions map
 * straight back to the body.
 *
 * Pure C++17, no PostgreSQL header, never throws: out-of-memory is reported
 * as a ParseError.
 */
#pragma once

#include "common/pure_cxx.h"

#include <cstddef>
#include <string>
#include <vector>

namespace bgw {

/* A reference to a proxy-function argument inside a SQL fragment, or an
 * element of a SPLIT list. */
struct ArgRef {
    std::string name;   /* identifier: unquoted folded to lower case (ASCII),
                           quoted with quotes removed and "" undoubled; empty for $n */
    int number = 0;     /* n when written $n (1-based), else 0 */
    size_t offset = 0;  /* in SqlFragment::text (SPLIT: in the body) */
    size_t length = 0;  /* bytes of the reference as written, quotes included */
    size_t body_pos = 0;/* offset in the body, for error positions */
    bool quoted = false;/* written as "quoted identifier" */
};

/* Raw SQL text passed through, with the argument-reference candidates in it. */
struct SqlFragment {
    std::string text;
    std::vector<ArgRef> args;
    size_t body_pos = 0; /* where text starts in the body */
};

enum class ValueKind { None, Literal, Function, ArgName, ArgNumber, Number, All, Any };

/* The operand of CLUSTER / CONNECT / RUN ON. */
struct Value {
    ValueKind kind = ValueKind::None;
    std::string literal;  /* Literal: decoded string value */
    long long number = 0; /* Number (RUN ON <n>), ArgNumber ($n) */
    std::string name;     /* ArgName: folded / unquoted name (as in ArgRef::name).
                             Function: the name as written, parts joined by '.'
                             without surrounding blanks, quotes kept (sch."Fn") */
    bool name_quoted = false; /* ArgName written as "quoted identifier" */
    SqlFragment call;     /* Function: `name(args...)` verbatim, with ArgRefs */
    size_t body_pos = 0;  /* first token of the operand */
};

struct ParsedBody {
    bool has_cluster = false, has_connect = false, has_run = false, has_split = false,
         has_target = false, has_select = false;
    Value cluster, connect, run;
    size_t cluster_pos = 0, connect_pos = 0, run_pos = 0, split_pos = 0,
           select_pos = 0; /* keyword positions, for the caller's errors */
    bool split_all = false;
    std::vector<ArgRef> split_args; /* offset == body_pos for these */
    std::string target;             /* as written, like Value::name of a Function */
    std::vector<std::string> target_parts; /* folded / unquoted parts: {"sch", "Fn"} */
    size_t target_pos = 0;
    SqlFragment select; /* from the SELECT keyword to the end of its last token
                           (a trailing `--` comment keeps its newline); no ';' */
};

struct ParseError {
    size_t position = 0; /* 0-based byte offset in the body */
    std::string message; /* PostgreSQL style: lower case, no trailing period */
};

/*
 * Parse a function body. Returns true on success; on failure fills err and
 * leaves out in an unspecified state.
 * standard_conforming_strings: when false, backslash escapes apply in plain
 * '...' strings too (as in PostgreSQL with that setting off).
 */
bool parse_body(const std::string &body, ParsedBody &out, ParseError &err,
                bool standard_conforming_strings = true);

} // namespace bgw
