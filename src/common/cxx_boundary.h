/*
 * cxx_boundary.h — the one mechanism for crossing the C++/PostgreSQL border.
 *
 * PostgreSQL reports errors with siglongjmp; C++ with exceptions. Neither may
 * cross into the other's frames:
 *
 *  - cxx_entry(f): run C++ code that may throw from PostgreSQL code (an fmgr
 *    entry point, a hook, the worker main loop). Every exception is caught;
 *    once the try block has been left — so every C++ destructor inside has
 *    run — it is turned into ereport(ERROR). A PgError (below) is re-thrown
 *    as the original PostgreSQL error with all its fields.
 *
 *  - pg_call(f): run PostgreSQL code that may ereport(ERROR) from C++ code
 *    that owns resources (RAII objects, std:: containers). The longjmp is
 *    caught by PG_TRY inside this frame, the error is copied and turned into
 *    a PgError exception, so the C++ frames above unwind normally.
 *
 * Code that needs neither — C-style backend code whose frames own nothing
 * with a destructor — calls PostgreSQL directly; that is the house style for
 * the call path (handler, compile, call, result), which is why those files
 * use palloc'd data, not std:: containers.
 *
 * Include after pg_headers.h.
 */
#pragma once

#include <exception>
#include <new>
#include <utility>

namespace bgw {

/* A PostgreSQL error captured by pg_call(), carried through C++ frames. */
class PgError : public std::exception {
public:
    explicit PgError(ErrorData *edata) : edata_(edata) {}
    const char *what() const noexcept override
    {
        return edata_ && edata_->message ? edata_->message : "PostgreSQL error";
    }
    ErrorData *edata() const { return edata_; }

private:
    ErrorData *edata_; /* palloc'd in the context current when pg_call ran */
};

/* Runs f under PG_TRY; a PostgreSQL error is copied (into the caller's
 * memory context) and returned, with the error state cleared. */
template <typename F>
ErrorData *pg_capture(F &f)
{
    MemoryContext caller_cxt = CurrentMemoryContext;
    ErrorData *edata = nullptr;
    PG_TRY();
    {
        f();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(caller_cxt);
        edata = CopyErrorData();
        FlushErrorState();
    }
    PG_END_TRY();
    return edata;
}

template <typename F>
auto pg_call(F &&f) -> decltype(f())
{
    if constexpr (std::is_void_v<decltype(f())>) {
        if (ErrorData *edata = pg_capture(f))
            throw PgError(edata);
    } else {
        decltype(f()) result{};
        auto run = [&] { result = f(); };
        if (ErrorData *edata = pg_capture(run))
            throw PgError(edata);
        return result;
    }
}

template <typename F>
void cxx_entry(F &&f)
{
    ErrorData *pg_error = nullptr;
    bool out_of_memory = false;
    char message[256] = {0};

    try {
        f();
        return;
    } catch (const PgError &e) {
        pg_error = e.edata();
    } catch (const std::bad_alloc &) {
        out_of_memory = true;
    } catch (const std::exception &e) {
        /* no palloc in a catch block: it could longjmp out of it */
        strlcpy(message, e.what(), sizeof(message));
    } catch (...) {
        strlcpy(message, "unknown C++ exception", sizeof(message));
    }

    /* every C++ frame inside f() has been unwound by now */
    if (pg_error)
        ReThrowError(pg_error);
    if (out_of_memory)
        ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
                        errdetail("A C++ allocation in bgw_proxy failed.")));
    ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                    errmsg("bgw_proxy internal error: %s", message)));
}

} // namespace bgw
