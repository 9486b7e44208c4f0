/*
 * Unit tests for body_parser (the proxy-function body language).
 */
#include "backend/body_parser.hpp"
#include "unit_test.hpp"

using namespace bgw;

namespace {

struct Result {
    bool ok = false;
    ParsedBody body;
    ParseError err;
};

Result parse(const std::string &s, bool scs = true)
{
    Result r;
    r.ok = parse_body(s, r.body, r.err, scs);
    return r;
}

/* Parses and reports the error if the body was rejected. */
ParsedBody ok_at(const std::string &s, const char *file, int line)
{
    Result r = parse(s);
    if (!r.ok)
        unit::fail(file, line, "parse of " + unit::show(s) + " failed at " +
                                   std::to_string(r.err.position) + ": " + r.err.message);
    return r.body;
}
#define OK(s) ok_at((s), __FILE__, __LINE__)

/* The body must be rejected with exactly this message at this position. */
#define ERR(s, pos, msg)                                                        \
    do {                                                                        \
        Result r_ = parse(s);                                                   \
        CHECK(!r_.ok);                                                          \
        CHECK_EQ(r_.err.message, std::string(msg));                             \
        CHECK_EQ(r_.err.position, (pos));                                       \
    } while (0)

/* Every reference must point at itself both in the fragment and the body. */
#define CHECK_REFS(body, frag)                                                  \
    do {                                                                        \
        CHECK_EQ((frag).text, (body).substr((frag).body_pos, (frag).text.size())); \
        for (const ArgRef &a_ : (frag).args) {                                  \
            CHECK_EQ((frag).text.substr(a_.offset, a_.length),                  \
                     (body).substr(a_.body_pos, a_.length));                    \
            CHECK_EQ(a_.body_pos, (frag).body_pos + a_.offset);                 \
        }                                                                       \
    } while (0)

/* The names of the identifier candidates, "$n" for numbered ones. */
std::vector<std::string> names(const std::vector<ArgRef> &refs)
{
    std::vector<std::string> v;
    for (const ArgRef &a : refs)
        v.push_back(a.number ? "$" + std::to_string(a.number) : a.name);
    return v;
}
using Names = std::vector<std::string>;

std::string join(const Names &v)
{
    std::string s;
    for (const std::string &x : v)
        s += (s.empty() ? "" : ",") + x;
    return s;
}
#define CHECK_NAMES(refs, ...) CHECK_EQ(join(names(refs)), join(Names{__VA_ARGS__}))

size_t pos(const std::string &hay, const std::string &needle, size_t from = 0)
{
    return hay.find(needle, from);
}

} // namespace

/* ---------- empty / statement-free bodies ---------- */

TEST(empty_body_is_valid)
{
    ParsedBody b = OK("");
    CHECK(!b.has_cluster && !b.has_connect && !b.has_run && !b.has_split && !b.has_target &&
          !b.has_select);
    CHECK(b.cluster.kind == ValueKind::None);
    CHECK(b.run.kind == ValueKind::None);
}

TEST(blank_and_comment_only_body_is_valid)
{
    ParsedBody b = OK("\n  -- just a comment\n\t/* and /* nested */ another */\r\n");
    CHECK(!b.has_cluster && !b.has_select);
    OK("-- comment without newline at end");
}

/* ---------- CLUSTER ---------- */

TEST(cluster_literal)
{
    std::string s = "\n    CLUSTER 'userdb';\n";
    ParsedBody b = OK(s);
    CHECK(b.has_cluster);
    CHECK_EQ(b.cluster.kind, ValueKind::Literal);
    CHECK_EQ(b.cluster.literal, "userdb");
    CHECK_EQ(b.cluster.body_pos, pos(s, "'userdb'"));
    CHECK_EQ(b.cluster_pos, pos(s, "CLUSTER"));
}

TEST(keywords_are_case_insensitive)
{
    ParsedBody b = OK("cLuStEr 'a'; rUn oN aLl; SpLiT ALL; tArGeT x; sElEcT 1;");
    CHECK(b.has_cluster && b.has_run && b.has_split && b.has_target && b.has_select);
    CHECK_EQ(b.cluster.literal, "a");
    CHECK_EQ(b.run.kind, ValueKind::All);
    CHECK(b.split_all);
    CHECK_EQ(b.select.text, "sElEcT 1");
}

TEST(cluster_literal_quote_doubling)
{
    CHECK_EQ(OK("CLUSTER 'it''s';").cluster.literal, "it's");
    CHECK_EQ(OK("CLUSTER '''';").cluster.literal, "'");
    CHECK_EQ(OK("CLUSTER '';").cluster.literal, "");
    /* standard strings: a backslash is an ordinary character */
    CHECK_EQ(OK("CLUSTER 'a\\b';").cluster.literal, "a\\b");
}

TEST(cluster_escape_string)
{
    CHECK_EQ(OK("CLUSTER E'a\\nb\\tc\\\\d\\'e''f';").cluster.literal, "a\nb\tc\\d'e'f");
    CHECK_EQ(OK("CLUSTER e'\\x41\\101\\q\\b\\f\\r';").cluster.literal, "AAq\b\f\r");
    CHECK_EQ(OK("CLUSTER E'\\xZ';").cluster.literal, "xZ");
    CHECK_EQ(OK("CLUSTER E'\\u00e9\\U0001F600';").cluster.literal, "\xC3\xA9\xF0\x9F\x98\x80");
    CHECK_EQ(OK("CLUSTER N'n';").cluster.literal, "n");
}

TEST(escape_string_errors)
{
    ERR("CLUSTER E'\\u12';", 10u, "invalid Unicode escape");
    ERR("CLUSTER E'\\uD800';", 10u, "invalid Unicode escape value");
    ERR("CLUSTER E'\\U00110000';", 10u, "invalid Unicode escape value");
    ERR("CLUSTER E'a\\0';", 11u, "invalid null character in string");
    ERR("CLUSTER E'abc\\';", 8u, "unterminated quoted string");
    ERR("CLUSTER E'abc\\", 8u, "unterminated quoted string");
}

TEST(standard_conforming_strings_off)
{
    Result r = parse("CLUSTER 'a\\'c';", false);
    CHECK(r.ok);
    CHECK_EQ(r.body.cluster.literal, "a'c");
    /* with it on, the same text is a string 'a\' followed by garbage */
    ERR("CLUSTER 'a\\'c';", 12u, "syntax error at or near \"c\"");
    /* (with b instead of c, b'...' would start an unterminated bit string) */
    ERR("CLUSTER 'a\\'b';", 12u, "unterminated quoted string");
}

TEST(cluster_dollar_quoted)
{
    CHECK_EQ(OK("CLUSTER $$it's$$;").cluster.literal, "it's");
    CHECK_EQ(OK("CLUSTER $q$a$$b$x$q$;").cluster.literal, "a$$b$x");
    CHECK_EQ(OK("CLUSTER $q1$$q$q1$;").cluster.literal, "$q");
    CHECK_EQ(OK("CLUSTER $_$x$_$;").cluster.literal, "x");
}

TEST(cluster_function)
{
    std::string s = "CLUSTER get_cluster(i_user, $2);";
    ParsedBody b = OK(s);
    CHECK_EQ(b.cluster.kind, ValueKind::Function);
    CHECK_EQ(b.cluster.name, "get_cluster");
    CHECK_EQ(b.cluster.call.text, "get_cluster(i_user, $2)");
    CHECK_EQ(b.cluster.call.body_pos, 8u);
    CHECK_EQ(b.cluster.body_pos, 8u);
    CHECK_NAMES(b.cluster.call.args, "i_user", "$2");
    CHECK_REFS(s, b.cluster.call);
    REQUIRE(b.cluster.call.args.size() == 2);
    CHECK_EQ(b.cluster.call.args[0].offset, 12u);
    CHECK_EQ(b.cluster.call.args[0].length, 6u);
    CHECK_EQ(b.cluster.call.args[1].number, 2);
    CHECK_EQ(b.cluster.call.args[1].offset, 20u);
    CHECK_EQ(b.cluster.call.args[1].length, 2u);
}

TEST(cluster_function_qualified_and_quoted)
{
    std::string s = "CLUSTER My . \"Fn\"\"x\" /* c */ (a);";
    ParsedBody b = OK(s);
    CHECK_EQ(b.cluster.kind, ValueKind::Function);
    CHECK_EQ(b.cluster.name, "My.\"Fn\"\"x\"");
    CHECK_EQ(b.cluster.call.text, "My . \"Fn\"\"x\" /* c */ (a)");
    CHECK_NAMES(b.cluster.call.args, "a");
    CHECK_REFS(s, b.cluster.call);
}

TEST(cluster_function_without_arguments)
{
    ParsedBody b = OK("CLUSTER f();");
    CHECK_EQ(b.cluster.call.text, "f()");
    CHECK(b.cluster.call.args.empty());
}

TEST(cluster_rejects_other_operands)
{
    ERR("CLUSTER userdb;", 8u, "syntax error at or near \"userdb\"");
    ERR("CLUSTER $1;", 8u, "syntax error at or near \"$1\"");
    ERR("CLUSTER 1;", 8u, "syntax error at or near \"1\"");
    ERR("CLUSTER ALL;", 8u, "syntax error at or near \"ALL\"");
    ERR("CLUSTER;", 7u, "syntax error at or near \";\"");
    ERR("CLUSTER", 7u, "syntax error at end of input");
    ERR("CLUSTER x'1f';", 8u, "syntax error at or near \"x'1f'\"");
    ERR("CLUSTER a.b;", 11u, "syntax error at or near \";\"");
    ERR("CLUSTER 'a' 'b';", 12u, "syntax error at or near \"'b'\"");
}

/* ---------- CONNECT ---------- */

TEST(connect_forms)
{
    ParsedBody b = OK("CONNECT 'dbname=x host=''y''';");
    CHECK(b.has_connect);
    CHECK_EQ(b.connect.kind, ValueKind::Literal);
    CHECK_EQ(b.connect.literal, "dbname=x host='y'");

    b = OK("CONNECT ConnStr;");
    CHECK_EQ(b.connect.kind, ValueKind::ArgName);
    CHECK_EQ(b.connect.name, "connstr");
    CHECK(!b.connect.name_quoted);

    b = OK("CONNECT \"ConnStr\";");
    CHECK_EQ(b.connect.kind, ValueKind::ArgName);
    CHECK_EQ(b.connect.name, "ConnStr");
    CHECK(b.connect.name_quoted);

    b = OK("CONNECT $3;");
    CHECK_EQ(b.connect.kind, ValueKind::ArgNumber);
    CHECK_EQ(b.connect.number, 3);

    b = OK("CONNECT pick_db(part);");
    CHECK_EQ(b.connect.kind, ValueKind::Function);
    CHECK_EQ(b.connect.name, "pick_db");
    CHECK_NAMES(b.connect.call.args, "part");
}

TEST(connect_errors)
{
    ERR("CONNECT 5;", 8u, "syntax error at or near \"5\"");
    ERR("CONNECT ALL x;", 12u, "syntax error at or near \"x\"");
    ERR("CONNECT a b;", 10u, "syntax error at or near \"b\"");
}

/* ---------- RUN ON ---------- */

TEST(run_on_keywords)
{
    CHECK_EQ(OK("RUN ON ALL;").run.kind, ValueKind::All);
    CHECK_EQ(OK("run on any;").run.kind, ValueKind::Any);
    CHECK_EQ(OK("RUN\n-- c\nON /* c */ Any ;").run.kind, ValueKind::Any);
    std::string s = "RUN ON ALL;";
    CHECK_EQ(OK(s).run_pos, 0u);
    CHECK_EQ(OK(s).run.body_pos, 7u);
}

TEST(run_on_number)
{
    ParsedBody b = OK("RUN ON 0;");
    CHECK_EQ(b.run.kind, ValueKind::Number);
    CHECK_EQ(b.run.number, 0);
    CHECK_EQ(OK("RUN ON 2147483647;").run.number, 2147483647LL);
    ERR("RUN ON 2147483648;", 7u, "integer out of range");
    ERR("RUN ON 1.5;", 7u, "syntax error at or near \"1.5\"");
    ERR("RUN ON 1e3;", 7u, "syntax error at or near \"1e3\"");
    ERR("RUN ON -1;", 7u, "syntax error at or near \"-\"");
}

TEST(run_on_hash_function)
{
    std::string s = "RUN ON hashtext(lower(i_UserName) || '-x' || \"Other\");";
    ParsedBody b = OK(s);
    CHECK_EQ(b.run.kind, ValueKind::Function);
    CHECK_EQ(b.run.name, "hashtext");
    CHECK_EQ(b.run.call.text, "hashtext(lower(i_UserName) || '-x' || \"Other\")");
    CHECK_NAMES(b.run.call.args, "i_username", "Other");
    REQUIRE(b.run.call.args.size() == 2);
    CHECK(!b.run.call.args[0].quoted);
    CHECK(b.run.call.args[1].quoted);
    CHECK_EQ(b.run.call.args[1].length, 7u);
    CHECK_REFS(s, b.run.call);
}

TEST(run_on_argument)
{
    ParsedBody b = OK("RUN ON part_nr;");
    CHECK_EQ(b.run.kind, ValueKind::ArgName);
    CHECK_EQ(b.run.name, "part_nr");
    b = OK("RUN ON $1;");
    CHECK_EQ(b.run.kind, ValueKind::ArgNumber);
    CHECK_EQ(b.run.number, 1);
    /* a keyword-looking argument name is still a name */
    CHECK_EQ(OK("RUN ON split;").run.name, "split");
    /* quoted "all" is an argument, not the keyword */
    b = OK("RUN ON \"all\";");
    CHECK_EQ(b.run.kind, ValueKind::ArgName);
    CHECK_EQ(b.run.name, "all");
}

TEST(run_on_function_named_like_keyword)
{
    ParsedBody b = OK("RUN ON all(x);");
    CHECK_EQ(b.run.kind, ValueKind::Function);
    CHECK_EQ(b.run.name, "all");
}

TEST(run_errors)
{
    ERR("RUN ALL;", 4u, "syntax error at or near \"ALL\"");
    ERR("RUN ON;", 6u, "syntax error at or near \";\"");
    ERR("RUN ON 'x';", 7u, "syntax error at or near \"'x'\"");
    ERR("RUN ON a.b;", 10u, "syntax error at or near \";\"");
    ERR("RUN ON ALL", 10u, "syntax error at end of input");
    ERR("RUN \"on\" ALL;", 4u, "syntax error at or near \"\"on\"\"");
}

/* ---------- function-call arguments ---------- */

TEST(call_argument_candidates)
{
    std::string s = "RUN ON h(a, s.t, u.v(w), x::int4, (r).f, 'lit id', $$dq id$$, y /* z */, -- q\n"
                    " g (k), \"Q\"\"x\", \"R\".c, E'\\' n', B'01', X'ff', U&\"d\", 1.5e3);";
    ParsedBody b = OK(s);
    CHECK_NAMES(b.run.call.args, "a", "w", "x", "r", "y", "k", "Q\"x");
    CHECK_REFS(s, b.run.call);
    CHECK(!b.run.call.text.empty() && b.run.call.text.back() == ')');
}

TEST(call_text_keeps_comments_and_nesting)
{
    std::string s = "CLUSTER f(a /* ) */, ';)', (b + (c)) -- )\n);";
    ParsedBody b = OK(s);
    CHECK_EQ(b.cluster.call.text, "f(a /* ) */, ';)', (b + (c)) -- )\n)");
    CHECK_NAMES(b.cluster.call.args, "a", "b", "c");
    CHECK_REFS(s, b.cluster.call);
}

TEST(call_errors)
{
    ERR("RUN ON f(a;", 8u, "unterminated parenthesis");
    ERR("RUN ON f(a, (b);", 8u, "unterminated parenthesis");
    ERR("RUN ON f((a);", 8u, "unterminated parenthesis");
    ERR("RUN ON f(a));", 11u, "syntax error at or near \")\"");
    ERR("RUN ON f(a) x;", 12u, "syntax error at or near \"x\"");
    ERR("RUN ON f('a);", 9u, "unterminated quoted string");
}

/* ---------- SPLIT ---------- */

TEST(split_list)
{
    std::string s = "SPLIT a, \"B c\",$3 , Dd;";
    ParsedBody b = OK(s);
    CHECK(b.has_split);
    CHECK(!b.split_all);
    CHECK_NAMES(b.split_args, "a", "B c", "$3", "dd");
    REQUIRE(b.split_args.size() == 4);
    CHECK_EQ(b.split_args[1].body_pos, pos(s, "\"B c\""));
    CHECK_EQ(b.split_args[1].length, 5u);
    CHECK(b.split_args[1].quoted);
    CHECK_EQ(b.split_args[2].body_pos, pos(s, "$3"));
    CHECK_EQ(b.split_args[2].offset, b.split_args[2].body_pos);
    CHECK_EQ(b.split_args[3].body_pos, pos(s, "Dd"));
    CHECK_EQ(b.split_pos, 0u);
}

TEST(split_all)
{
    ParsedBody b = OK("SPLIT All;");
    CHECK(b.has_split);
    CHECK(b.split_all);
    CHECK(b.split_args.empty());
    /* quoted: an argument called all */
    b = OK("SPLIT \"all\";");
    CHECK(!b.split_all);
    CHECK_NAMES(b.split_args, "all");
}

TEST(split_errors)
{
    ERR("SPLIT;", 5u, "syntax error at or near \";\"");
    ERR("SPLIT a b;", 8u, "syntax error at or near \"b\"");
    ERR("SPLIT a,;", 8u, "syntax error at or near \";\"");
    ERR("SPLIT ALL, a;", 9u, "syntax error at or near \",\"");
    ERR("SPLIT a.b;", 7u, "syntax error at or near \".\"");
    ERR("SPLIT 'a';", 6u, "syntax error at or near \"'a'\"");
    ERR("SPLIT f(a);", 7u, "syntax error at or near \"(\"");
}

/* ---------- TARGET ---------- */

TEST(target_forms)
{
    ParsedBody b = OK("TARGET Remote_Fn;");
    CHECK(b.has_target);
    CHECK_EQ(b.target, "Remote_Fn");
    REQUIRE(b.target_parts.size() == 1);
    CHECK_EQ(b.target_parts[0], "remote_fn");
    CHECK_EQ(b.target_pos, 7u);

    b = OK("TARGET  Sch . \"Fn\"\"1\";");
    CHECK_EQ(b.target, "Sch.\"Fn\"\"1\"");
    REQUIRE(b.target_parts.size() == 2);
    CHECK_EQ(b.target_parts[0], "sch");
    CHECK_EQ(b.target_parts[1], "Fn\"1");
    CHECK_EQ(b.target_pos, 8u);
}

TEST(target_errors)
{
    ERR("TARGET;", 6u, "syntax error at or near \";\"");
    ERR("TARGET f(x);", 8u, "syntax error at or near \"(\"");
    ERR("TARGET a.;", 9u, "syntax error at or near \";\"");
    ERR("TARGET 'f';", 7u, "syntax error at or near \"'f'\"");
    ERR("TARGET a b;", 9u, "syntax error at or near \"b\"");
}

/* ---------- SELECT ---------- */

TEST(select_text_and_candidates)
{
    std::string s = "CLUSTER 'c';\n  SELECT a, $2 FROM Tab t WHERE t.col = I_Id AND x IN (1, 2);\n";
    ParsedBody b = OK(s);
    CHECK(b.has_select);
    CHECK_EQ(b.select.text, "SELECT a, $2 FROM Tab t WHERE t.col = I_Id AND x IN (1, 2)");
    CHECK_EQ(b.select.body_pos, pos(s, "SELECT"));
    CHECK_EQ(b.select_pos, pos(s, "SELECT"));
    /* every bare identifier is a candidate; the caller keeps the real arguments */
    CHECK_NAMES(b.select.args, "a", "$2", "from", "tab", "t", "where", "i_id", "and", "x");
    CHECK_REFS(s, b.select);
    REQUIRE(b.select.args.size() == 9);
    CHECK_EQ(b.select.args[0].offset, 7u);
    CHECK_EQ(b.select.args[1].number, 2);
    CHECK_EQ(b.select.args[1].name, "");
}

TEST(select_excluded_identifiers)
{
    std::string s = "SELECT 'a b', $x$ c $x$, E'\\'d', /* e */ f.g, h(i), j::k, (l).m, "
                    "\"N\".o, p -- q\n, B'1', X'2', U&'r', U&\"s\", t.*, u::\"V\";";
    ParsedBody b = OK(s);
    CHECK_NAMES(b.select.args, "i", "j", "l", "p", "u");
    CHECK_REFS(s, b.select);
}

TEST(select_string_prefix_needs_adjacent_quote)
{
    /* "x 'a'" is an identifier followed by a string (typed literal style) */
    ParsedBody b = OK("SELECT x 'a', e, n 'b', b;");
    CHECK_NAMES(b.select.args, "x", "e", "n", "b");
}

TEST(select_quoted_identifiers)
{
    std::string s = "SELECT \"My\"\"Arg\", \"lower\";";
    ParsedBody b = OK(s);
    CHECK_NAMES(b.select.args, "My\"Arg", "lower");
    REQUIRE(b.select.args.size() == 2);
    CHECK(b.select.args[0].quoted);
    CHECK_EQ(b.select.args[0].length, 9u);
    CHECK_REFS(s, b.select);
}

TEST(select_identifier_characters)
{
    std::string s = "SELECT a$b, _x1, \xC3\x84" "Bc, Zz9;";
    ParsedBody b = OK(s);
    /* only ASCII is folded; other bytes are kept */
    CHECK_NAMES(b.select.args, "a$b", "_x1", "\xC3\x84" "bc", "zz9");
    CHECK_REFS(s, b.select);
}

TEST(select_numbers_are_not_identifiers)
{
    ParsedBody b = OK("SELECT 1.5e3, .5, 1e-2, 3E+4x, 2..3;");
    CHECK_NAMES(b.select.args, "x");
}

TEST(select_semicolons_inside_do_not_end_it)
{
    std::string s = "SELECT ';', $t$;$t$, \";\", (a; b) /* ; */ -- ;\n, c; CLUSTER 'x';";
    ParsedBody b = OK(s);
    CHECK_EQ(b.select.text, "SELECT ';', $t$;$t$, \";\", (a; b) /* ; */ -- ;\n, c");
    CHECK_NAMES(b.select.args, ";", "a", "b", "c");
    CHECK(b.has_cluster);
    CHECK_REFS(s, b.select);
}

TEST(select_trailing_comments_kept)
{
    ParsedBody b = OK("SELECT a /* hint */  \n ;");
    CHECK_EQ(b.select.text, "SELECT a /* hint */");
    b = OK("SELECT a -- note\n  ;");
    CHECK_EQ(b.select.text, "SELECT a -- note\n");
    b = OK("SELECT a -- note\r\n;");
    CHECK_EQ(b.select.text, "SELECT a -- note\r");
    b = OK("SELECT a   ;");
    CHECK_EQ(b.select.text, "SELECT a");
    b = OK("select/*x*/;");
    CHECK_EQ(b.select.text, "select/*x*/");
    CHECK(b.select.args.empty());
}

TEST(select_anywhere_and_keyword_not_a_candidate)
{
    ParsedBody b = OK("SELECT select_me; CLUSTER 'c'; RUN ON ALL;");
    CHECK(b.has_select && b.has_cluster && b.has_run);
    CHECK_NAMES(b.select.args, "select_me");
    b = OK("SELECT (a).b;");
    CHECK_NAMES(b.select.args, "a");
    CHECK_EQ(b.select.text, "SELECT (a).b");
}

TEST(select_errors)
{
    ERR("SELECT a", 8u, "syntax error at end of input");
    ERR("SELECT f(a;", 8u, "unterminated parenthesis");
    ERR("SELECT (a, (b);", 7u, "unterminated parenthesis");
    /* several unclosed: the innermost is reported */
    ERR("SELECT f(a, g(b;", 13u, "unterminated parenthesis");
    ERR("SELECT a);", 8u, "syntax error at or near \")\"");
    ERR("SELECT 'a;", 7u, "unterminated quoted string");
    ERR("SELECT $1, $0;", 11u, "there is no parameter $0");
    ERR("SELECT $99999999999;", 7u, "parameter number too large");
}

/* ---------- duplicates ---------- */

TEST(duplicate_statements)
{
    ERR("CLUSTER 'a'; CLUSTER 'b';", 13u, "CLUSTER statement given twice");
    ERR("CONNECT 'a'; connect 'b';", 13u, "CONNECT statement given twice");
    ERR("RUN ON ALL; SELECT 1; RUN ON ANY;", 22u, "RUN statement given twice");
    ERR("SPLIT a; SPLIT b;", 9u, "SPLIT statement given twice");
    ERR("TARGET a; TARGET b;", 10u, "TARGET statement given twice");
    ERR("SELECT 1; SELECT 2;", 10u, "SELECT statement given twice");
    /* reported at the keyword, before looking at a bad operand */
    ERR("RUN ON ALL; RUN garbage", 12u, "RUN statement given twice");
}

/* ---------- garbage and lexical errors ---------- */

TEST(garbage)
{
    ERR("foo;", 0u, "syntax error at or near \"foo\"");
    ERR("  \"cluster\" 'a';", 2u, "syntax error at or near \"\"cluster\"\"");
    ERR(";", 0u, "syntax error at or near \";\"");
    ERR("CLUSTER 'a';;", 12u, "syntax error at or near \";\"");
    ERR("CLUSTER 'a' RUN ON ALL;", 12u, "syntax error at or near \"RUN\"");
    ERR("42;", 0u, "syntax error at or near \"42\"");
    ERR("'str';", 0u, "syntax error at or near \"'str'\"");
    ERR("$1;", 0u, "syntax error at or near \"$1\"");
    ERR("(", 0u, "syntax error at or near \"(\"");
    ERR("CLUSTER 'a'; @", 13u, "syntax error at or near \"@\"");
    ERR("CLUSTER 'a'; $", 13u, "syntax error at or near \"$\"");
    ERR("\xC3\xA9t\xC3\xA9;", 0u, "syntax error at or near \"\xC3\xA9t\xC3\xA9\"");
    ERR("CLUSTER 'a';\nRUN ON ALL;\nSELEC 1;", 25u, "syntax error at or near \"SELEC\"");
}

TEST(lexical_errors)
{
    ERR("CLUSTER 'abc;", 8u, "unterminated quoted string");
    ERR("CLUSTER $a$abc$b$;", 8u, "unterminated dollar-quoted string");
    ERR("CLUSTER $$abc", 8u, "unterminated dollar-quoted string");
    ERR("CLUSTER 'a'; /* x /* y */", 13u, "unterminated /* comment");
    ERR("CLUSTER 'a'; /*", 13u, "unterminated /* comment");
    ERR("TARGET \"abc;", 7u, "unterminated quoted identifier");
    ERR("TARGET \"\";", 7u, "zero-length delimited identifier");
    ERR("SELECT U&'abc;", 7u, "unterminated quoted string");
}

TEST(errors_are_reported_in_body_order)
{
    /* the syntax error comes before the unterminated string */
    ERR("foo 'abc", 0u, "syntax error at or near \"foo\"");
    ERR("CLUSTER 'a' 'b", 12u, "unterminated quoted string");
    ERR("CLUSTER a.b 'x", 12u, "unterminated quoted string");
}

TEST(comments_between_everything)
{
    std::string s = "/*a*/CLUSTER/*b*/'c'/*d*/;--e\nRUN--f\nON--g\nALL--h\n;/* /* nested */ RUN ON ANY; */";
    ParsedBody b = OK(s);
    CHECK_EQ(b.cluster.literal, "c");
    CHECK_EQ(b.run.kind, ValueKind::All);
    CHECK_EQ(b.cluster_pos, 5u);
}

TEST(keyword_must_be_a_whole_word)
{
    ERR("CLUSTERX 'a';", 0u, "syntax error at or near \"CLUSTERX\"");
    ERR("RUN ONALL;", 4u, "syntax error at or near \"ONALL\"");
}

TEST(realistic_body)
{
    std::string s =
        "\n"
        "    -- route by user name\n"
        "    CLUSTER 'userdb';\n"
        "    RUN ON hashtext(i_username);\n"
        "    SPLIT i_ids;\n"
        "    TARGET public.get_balance_v2;\n"
        "    SELECT b.balance FROM get_balance_v2(i_username, $2) b\n"
        "     WHERE b.kind = 'x''y';\n";
    ParsedBody b = OK(s);
    CHECK_EQ(b.cluster.literal, "userdb");
    CHECK_EQ(b.run.kind, ValueKind::Function);
    CHECK_EQ(b.run.call.text, "hashtext(i_username)");
    CHECK_NAMES(b.run.call.args, "i_username");
    CHECK_NAMES(b.split_args, "i_ids");
    CHECK_EQ(b.target, "public.get_balance_v2");
    CHECK_EQ(b.select.text,
             "SELECT b.balance FROM get_balance_v2(i_username, $2) b\n     WHERE b.kind = 'x''y'");
    CHECK_NAMES(b.select.args, "from", "i_username", "$2", "b", "where");
    CHECK_REFS(s, b.select);
    CHECK_REFS(s, b.run.call);
}

TEST(reused_output_is_reset)
{
    ParsedBody b;
    ParseError e;
    CHECK(parse_body("CLUSTER 'a'; SELECT x;", b, e));
    CHECK(parse_body("RUN ON ALL;", b, e));
    CHECK(!b.has_cluster);
    CHECK(!b.has_select);
    CHECK(b.select.args.empty());
    CHECK(b.has_run);
}

TEST(large_body)
{
    /* deep nesting and long text must not blow up or be quadratic */
    std::string s = "SELECT ";
    for (int k = 0; k < 20000; ++k)
        s += "(";
    s += "a";
    for (int k = 0; k < 20000; ++k)
        s += ")";
    s += ";";
    ParsedBody b = OK(s);
    CHECK_NAMES(b.select.args, "a");
    CHECK_EQ(b.select.text.size(), s.size() - 1);
}
