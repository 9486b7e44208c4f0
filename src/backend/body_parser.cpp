/*
 * body_parser.cpp — see body_parser.hpp.
 *
 * Two passes: lex() turns the whole body into tokens (comments and blanks
 * dropped), then Parser walks them. A lexical error becomes a final Error
 * token instead of failing at once, so errors are still reported in body
 * order: a syntax error before an unterminated string wins, as it would with
 * a lazily pulling parser.
 *
 * Internally errors are thrown as ParseError; parse_body() catches
 * everything, so no exception leaves this file.
 */
#include "backend/body_parser.hpp"

#include <algorithm>
#include <climits>
#include <new>
#include <utility>

namespace bgw {
namespace {

enum class TK {
    Ident,  /* unquoted identifier or keyword; val is folded to lower case */
    QIdent, /* "quoted identifier"; val is the name, "" undoubled */
    String, /* '...', E'...', N'...', $tag$...$tag$; val is the decoded value */
    Param,  /* $n; num is n */
    Number, /* numeric constant; val is the text */
    Punct,  /* one operator character, or "::" (kept whole for the cast rule) */
    Other,  /* B'..', X'..', U&'..', U&"..": passed through, never an operand */
    End,
    Error   /* lexical error at begin; val is the message */
};

struct Tok {
    TK kind;
    size_t begin, end; /* [begin, end) in the body */
    size_t trail;      /* end of the comments that follow, up to the next token
                          (== end without any); a `--` comment counts its newline */
    std::string val;
    long long num;
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
/* Bytes >= 0x80 are identifier characters, as in PostgreSQL (multibyte text). */
bool is_ident_start(char c)
{
    unsigned char u = static_cast<unsigned char>(c);
    return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u >= 0x80;
}
bool is_ident_cont(char c) { return is_ident_start(c) || is_digit(c) || c == '$'; }
bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
int hex_value(char c)
{
    return is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : c - 'A' + 10;
}

/* PostgreSQL folds unquoted identifiers; only ASCII, as it does for UTF-8. */
std::string fold(std::string s)
{
    for (char &c : s)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return s;
}

void append_utf8(std::string &out, unsigned long cp)
{
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

class Lexer {
public:
    Lexer(const std::string &s, bool std_strings) : s_(s), n_(s.size()), std_strings_(std_strings) {}

    std::vector<Tok> run()
    {
        while (p_ < n_ && step()) {
        }
        if (toks_.empty() || toks_.back().kind != TK::Error)
            push(TK::End, n_);
        return std::move(toks_);
    }

private:
    const std::string &s_;
    size_t n_, p_ = 0;
    bool std_strings_;
    std::vector<Tok> toks_;

    char at(size_t i) const { return i < n_ ? s_[i] : '\0'; }

    /* Token [b, p_). */
    void push(TK k, size_t b, std::string val = std::string(), long long num = 0)
    {
        toks_.push_back(Tok{k, b, p_, p_, std::move(val), num});
    }
    bool error(size_t at_pos, const char *msg)
    {
        toks_.push_back(Tok{TK::Error, at_pos, at_pos, at_pos, msg, 0});
        return false;
    }
    void comment_ends_at(size_t e)
    {
        if (!toks_.empty())
            toks_.back().trail = e;
    }

    /* One token or comment; false after a lexical error. */
    bool step()
    {
        const size_t b = p_;
        const char c = s_[p_];
        if (is_space(c)) {
            ++p_;
            return true;
        }
        if (c == '-' && at(p_ + 1) == '-') {
            while (p_ < n_ && s_[p_] != '\n' && s_[p_] != '\r')
                ++p_;
            /* Keep the newline: a fragment ending in this comment must not
             * swallow whatever the caller appends after it. */
            comment_ends_at(p_ < n_ ? p_ + 1 : p_);
            return true;
        }
        if (c == '/' && at(p_ + 1) == '*')
            return block_comment();
        if (c == '"') {
            std::string v;
            if (!quoted(b, '"', false, v))
                return false;
            if (v.empty())
                return error(b, "zero-length delimited identifier");
            push(TK::QIdent, b, std::move(v));
            return true;
        }
        if (c == '\'')
            return string(b, !std_strings_, TK::String);
        if (c == '$')
            return dollar(b);
        if (is_ident_start(c))
            return word(b);
        if (is_digit(c) || (c == '.' && is_digit(at(p_ + 1)))) {
            number(b);
            return true;
        }
        p_ += (c == ':' && at(p_ + 1) == ':') ? 2u : 1u;
        push(TK::Punct, b, s_.substr(b, p_ - b));
        return true;
    }

    bool block_comment()
    {
        const size_t b = p_;
        int depth = 0; /* nested, as in PostgreSQL */
        do {
            if (p_ >= n_)
                return error(b, "unterminated /* comment");
            if (s_[p_] == '/' && at(p_ + 1) == '*') {
                ++depth;
                p_ += 2;
            } else if (s_[p_] == '*' && at(p_ + 1) == '/') {
                --depth;
                p_ += 2;
            } else {
                ++p_;
            }
        } while (depth > 0);
        comment_ends_at(p_);
        return true;
    }

    /* Reads a string or quoted identifier starting at p_ (the opening quote)
     * into v: doubled quotes undoubled, backslash escapes decoded if esc. */
    bool quoted(size_t b, char q, bool esc, std::string &v)
    {
        for (++p_;;) {
            if (p_ >= n_)
                return error(b, q == '"' ? "unterminated quoted identifier"
                                         : "unterminated quoted string");
            const char c = s_[p_];
            if (c == q) {
                if (at(p_ + 1) != q) {
                    ++p_;
                    return true;
                }
                v += q;
                p_ += 2;
            } else if (c == '\\' && esc) {
                if (!escape(b, v))
                    return false;
            } else {
                v += c;
                ++p_;
            }
        }
    }

    /* Backslash escape at p_ inside an E'...' string (b = string start). */
    bool escape(size_t b, std::string &v)
    {
        const size_t e = p_;
        const char c = at(p_ + 1);
        p_ += 2;
        unsigned long val = 0;
        switch (c) {
        case '\0':
            if (e + 1 >= n_)
                return error(b, "unterminated quoted string");
            return error(e, "invalid null character in string");
        case 'b': v += '\b'; return true;
        case 'f': v += '\f'; return true;
        case 'n': v += '\n'; return true;
        case 'r': v += '\r'; return true;
        case 't': v += '\t'; return true;
        case 'x':
            if (!is_hex(at(p_))) {
                v += 'x';
                return true;
            }
            for (int k = 0; k < 2 && is_hex(at(p_)); ++k)
                val = val * 16 + static_cast<unsigned long>(hex_value(s_[p_++]));
            break;
        case 'u':
        case 'U': {
            const int len = c == 'u' ? 4 : 8;
            for (int k = 0; k < len; ++k) {
                if (!is_hex(at(p_)))
                    return error(e, "invalid Unicode escape");
                val = val * 16 + static_cast<unsigned long>(hex_value(s_[p_++]));
            }
            if (val == 0 || val > 0x10FFFF || (val >= 0xD800 && val <= 0xDFFF))
                return error(e, "invalid Unicode escape value");
            append_utf8(v, val);
            return true;
        }
        default:
            if (c >= '0' && c <= '7') {
                val = static_cast<unsigned long>(c - '0');
                for (int k = 0; k < 2 && at(p_) >= '0' && at(p_) <= '7'; ++k)
                    val = val * 8 + static_cast<unsigned long>(s_[p_++] - '0');
                break;
            }
            v += c; /* \' \\ and any other character stand for themselves */
            return true;
        }
        if ((val & 0xFF) == 0)
            return error(e, "invalid null character in string");
        v += static_cast<char>(val & 0xFF);
        return true;
    }

    /* p_ is at the opening quote; b may be earlier (prefix letters). */
    bool string(size_t b, bool esc, TK kind)
    {
        std::string v;
        if (!quoted(b, '\'', esc, v))
            return false;
        push(kind, b, std::move(v));
        return true;
    }

    bool dollar(size_t b)
    {
        if (is_digit(at(p_ + 1))) {
            long long n = 0;
            for (++p_; is_digit(at(p_)); ++p_) {
                n = n * 10 + (s_[p_] - '0');
                if (n > INT_MAX)
                    return error(b, "parameter number too large");
            }
            if (n == 0)
                return error(b, "there is no parameter $0");
            push(TK::Param, b, std::string(), n);
            return true;
        }
        /* $tag$ or $$; a tag is an identifier without '$' */
        size_t q = p_ + 1;
        if (is_ident_start(at(q)))
            while (is_ident_start(at(q)) || is_digit(at(q)))
                ++q;
        if (at(q) != '$') { /* a lone '$': let the parser complain if it cares */
            ++p_;
            push(TK::Punct, b, "$");
            return true;
        }
        const std::string tag = s_.substr(b, q + 1 - b);
        const size_t close = s_.find(tag, q + 1);
        if (close == std::string::npos)
            return error(b, "unterminated dollar-quoted string");
        p_ = close + tag.size();
        push(TK::String, b, s_.substr(q + 1, close - q - 1));
        return true;
    }

    bool word(size_t b)
    {
        const char c = s_[p_], c1 = at(p_ + 1);
        /* String prefixes must touch the quote, as in PostgreSQL; otherwise
         * the letter would look like an identifier (and an argument). */
        if (c1 == '\'') {
            switch (c) {
            case 'e': case 'E':
                ++p_;
                return string(b, true, TK::String);
            case 'n': case 'N':
                ++p_;
                return string(b, !std_strings_, TK::String);
            case 'b': case 'B': case 'x': case 'X':
                ++p_;
                return string(b, false, TK::Other);
            default:
                break;
            }
        }
        if ((c == 'u' || c == 'U') && c1 == '&' && (at(p_ + 2) == '\'' || at(p_ + 2) == '"')) {
            /* Unicode escapes are not decoded: such tokens only pass through. */
            p_ += 2;
            std::string v;
            if (!quoted(b, s_[p_], false, v))
                return false;
            push(TK::Other, b);
            return true;
        }
        while (is_ident_cont(at(p_)))
            ++p_;
        push(TK::Ident, b, fold(s_.substr(b, p_ - b)));
        return true;
    }

    void number(size_t b)
    {
        while (is_digit(at(p_)))
            ++p_;
        if (at(p_) == '.' && at(p_ + 1) != '.') /* "1..2" is 1 then ..2 */
            for (++p_; is_digit(at(p_)); ++p_) {
            }
        if (at(p_) == 'e' || at(p_) == 'E') {
            size_t q = p_ + 1;
            if (at(q) == '+' || at(q) == '-')
                ++q;
            if (is_digit(at(q)))
                for (p_ = q; is_digit(at(p_)); ++p_) {
                }
        }
        push(TK::Number, b, s_.substr(b, p_ - b));
    }
};

/* What an operand may be, per statement. */
enum : unsigned {
    V_LITERAL = 1, V_FUNCTION = 2, V_ARGNAME = 4, V_ARGNUMBER = 8, V_NUMBER = 16, V_ALLANY = 32
};

class Parser {
public:
    Parser(const std::string &body, std::vector<Tok> toks) : body_(body), toks_(std::move(toks)) {}

    void run(ParsedBody &out)
    {
        while (cur().kind != TK::End) {
            const Tok &kw = cur();
            if (kw.kind != TK::Ident)
                syntax_error(kw);
            if (kw.val == "cluster") {
                once(out.has_cluster, kw, "CLUSTER");
                out.cluster_pos = kw.begin;
                ++i_;
                value(out.cluster, V_LITERAL | V_FUNCTION);
            } else if (kw.val == "connect") {
                once(out.has_connect, kw, "CONNECT");
                out.connect_pos = kw.begin;
                ++i_;
                value(out.connect, V_LITERAL | V_FUNCTION | V_ARGNAME | V_ARGNUMBER);
            } else if (kw.val == "run") {
                once(out.has_run, kw, "RUN");
                out.run_pos = kw.begin;
                ++i_;
                if (!is_kw(cur(), "on"))
                    syntax_error(cur());
                ++i_;
                value(out.run, V_FUNCTION | V_ARGNAME | V_ARGNUMBER | V_NUMBER | V_ALLANY);
            } else if (kw.val == "split") {
                once(out.has_split, kw, "SPLIT");
                out.split_pos = kw.begin;
                ++i_;
                split(out);
            } else if (kw.val == "target") {
                once(out.has_target, kw, "TARGET");
                ++i_;
                out.target_pos = cur().begin;
                qualified_name(out.target, &out.target_parts);
            } else if (kw.val == "select") {
                once(out.has_select, kw, "SELECT");
                out.select_pos = kw.begin;
                select(out.select);
            } else {
                syntax_error(kw);
            }
            expect(";");
        }
    }

private:
    const std::string &body_;
    const std::vector<Tok> toks_; /* ends with End or Error */
    size_t i_ = 0;

    /* The current token; reaching a lexical error reports it. */
    const Tok &cur() const
    {
        const Tok &t = toks_[i_];
        if (t.kind == TK::Error)
            throw ParseError{t.begin, t.val};
        return t;
    }
    /* Lookahead without reporting errors; clamps to the last token. */
    const Tok &tok(size_t j) const { return toks_[std::min(j, toks_.size() - 1)]; }

    std::string text(const Tok &t) const { return body_.substr(t.begin, t.end - t.begin); }
    static bool is_punct(const Tok &t, const char *p) { return t.kind == TK::Punct && t.val == p; }
    static bool is_kw(const Tok &t, const char *kw) { return t.kind == TK::Ident && t.val == kw; }
    static bool is_name(const Tok &t) { return t.kind == TK::Ident || t.kind == TK::QIdent; }

    [[noreturn]] void syntax_error(const Tok &t) const
    {
        if (t.kind == TK::Error)
            throw ParseError{t.begin, t.val};
        if (t.kind == TK::End)
            throw ParseError{t.begin, "syntax error at end of input"};
        throw ParseError{t.begin, "syntax error at or near \"" + text(t) + "\""};
    }
    void expect(const char *p)
    {
        if (!is_punct(cur(), p))
            syntax_error(cur());
        ++i_;
    }
    static void once(bool &seen, const Tok &kw, const char *what)
    {
        if (seen)
            throw ParseError{kw.begin, std::string(what) + " statement given twice"};
        seen = true;
    }

    /* name [. name ...] as written (blanks and comments around dots dropped). */
    void qualified_name(std::string &written, std::vector<std::string> *parts)
    {
        for (;;) {
            const Tok &t = cur();
            if (!is_name(t))
                syntax_error(t);
            written += text(t);
            if (parts)
                parts->push_back(t.val);
            ++i_;
            if (!is_punct(cur(), "."))
                return;
            written += '.';
            ++i_;
        }
    }

    void value(Value &v, unsigned allowed)
    {
        const Tok &t = cur();
        v.body_pos = t.begin;
        switch (t.kind) {
        case TK::String:
            if (!(allowed & V_LITERAL))
                syntax_error(t);
            v.kind = ValueKind::Literal;
            v.literal = t.val;
            ++i_;
            return;
        case TK::Param:
            if (!(allowed & V_ARGNUMBER))
                syntax_error(t);
            v.kind = ValueKind::ArgNumber;
            v.number = t.num;
            ++i_;
            return;
        case TK::Number: {
            if (!(allowed & V_NUMBER))
                syntax_error(t);
            long long n = 0;
            for (char c : t.val) {
                if (!is_digit(c))
                    syntax_error(t); /* RUN ON 1.5 */
                n = n * 10 + (c - '0');
                if (n > INT_MAX)
                    throw ParseError{t.begin, "integer out of range"};
            }
            v.kind = ValueKind::Number;
            v.number = n;
            ++i_;
            return;
        }
        case TK::Ident:
        case TK::QIdent: {
            /* A (qualified) name followed by '(' is a function call. */
            size_t j = i_;
            while (is_punct(tok(j + 1), ".") && is_name(tok(j + 2)))
                j += 2;
            const Tok &after = tok(j + 1);
            if (is_punct(after, "(")) {
                if (!(allowed & V_FUNCTION))
                    syntax_error(t);
                call(v);
                return;
            }
            if (j != i_)
                syntax_error(after); /* a qualified name must be called */
            if (t.kind == TK::Ident && (allowed & V_ALLANY) && (t.val == "all" || t.val == "any")) {
                v.kind = t.val == "all" ? ValueKind::All : ValueKind::Any;
                ++i_;
                return;
            }
            if (!(allowed & V_ARGNAME))
                syntax_error(t); /* e.g. CLUSTER userdb; (quotes forgotten) */
            v.kind = ValueKind::ArgName;
            v.name = t.val;
            v.name_quoted = t.kind == TK::QIdent;
            ++i_;
            return;
        }
        default:
            syntax_error(t);
        }
    }

    /* func(args...): the current token starts the name. */
    void call(Value &v)
    {
        const size_t start = cur().begin;
        v.kind = ValueKind::Function;
        qualified_name(v.name, nullptr);
        ++i_; /* '(' */
        v.call.body_pos = start;
        sql(v.call, start, true);
        v.call.text = body_.substr(start, toks_[i_ - 1].end - start);
    }

    /* The SELECT keyword is current. The text runs up to the top-level ';'
     * (left current) and keeps trailing comments. */
    void select(SqlFragment &f)
    {
        const size_t start = cur().begin;
        ++i_;
        f.body_pos = start;
        sql(f, start, false);
        f.text = body_.substr(start, toks_[i_ - 1].trail - start);
    }

    /*
     * Passes SQL tokens through, recording argument candidates into f.
     * in_call: the '(' of a call was just consumed; stop after its ')'.
     * Otherwise stop at a ';' outside parentheses, or at the end.
     */
    void sql(SqlFragment &f, size_t start, bool in_call)
    {
        std::vector<size_t> open; /* positions of unclosed '(' */
        if (in_call)
            open.push_back(toks_[i_ - 1].begin);
        for (;; ++i_) {
            const Tok &t = cur();
            if (t.kind == TK::End) {
                if (!open.empty())
                    throw ParseError{open.back(), "unterminated parenthesis"};
                return;
            }
            if (is_punct(t, ";") && open.empty())
                return;
            if (is_punct(t, "(")) {
                open.push_back(t.begin);
            } else if (is_punct(t, ")")) {
                if (open.empty())
                    syntax_error(t);
                open.pop_back();
                if (open.empty() && in_call) {
                    ++i_;
                    return;
                }
            } else {
                candidate(f, start);
            }
        }
    }

    /*
     * Is the current token a possible argument reference? $n always is. An
     * identifier is not when it is part of a dotted name (a.b: table or
     * schema qualification, or a field selection), a function name (f(...)),
     * or a type after '::' — substituting a value there would break the SQL.
     */
    void candidate(SqlFragment &f, size_t start) const
    {
        const Tok &t = toks_[i_];
        ArgRef a;
        if (t.kind == TK::Param) {
            a.number = static_cast<int>(t.num);
        } else if (is_name(t)) {
            const Tok &prev = toks_[i_ - 1], &next = tok(i_ + 1);
            if (is_punct(prev, ".") || is_punct(prev, "::") || is_punct(next, "(") ||
                is_punct(next, "."))
                return;
            a.name = t.val;
            a.quoted = t.kind == TK::QIdent;
        } else {
            return;
        }
        a.offset = t.begin - start;
        a.length = t.end - t.begin;
        a.body_pos = t.begin;
        f.args.push_back(std::move(a));
    }

    void split(ParsedBody &out)
    {
        if (is_kw(cur(), "all")) {
            out.split_all = true;
            ++i_;
            return;
        }
        for (;;) {
            const Tok &t = cur();
            ArgRef a;
            if (t.kind == TK::Param)
                a.number = static_cast<int>(t.num);
            else if (is_name(t)) {
                a.name = t.val;
                a.quoted = t.kind == TK::QIdent;
            } else
                syntax_error(t);
            a.offset = a.body_pos = t.begin;
            a.length = t.end - t.begin;
            out.split_args.push_back(std::move(a));
            ++i_;
            if (!is_punct(cur(), ","))
                return;
            ++i_;
        }
    }
};

} // namespace

bool parse_body(const std::string &body, ParsedBody &out, ParseError &err,
                bool standard_conforming_strings)
{
    try {
        out = ParsedBody();
        Parser(body, Lexer(body, standard_conforming_strings).run()).run(out);
        return true;
    } catch (ParseError &e) {
        err = std::move(e);
    } catch (const std::bad_alloc &) {
        err.position = 0;
        err.message = "out of memory"; /* short enough not to allocate */
    } catch (...) {
        err.position = 0;
        err.message = "parser failure";
    }
    return false;
}

} // namespace bgw
