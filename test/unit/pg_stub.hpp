/*
 * pg_stub.hpp — a tiny fake PostgreSQL server for unit tests of the pool.
 *
 * One thread listens on 127.0.0.1 (an ephemeral port) and speaks just
 * enough of protocol 3.0 for libpq: SSLRequest and GSSENCRequest are
 * refused ('N'), a StartupMessage gets AuthenticationOk, ParameterStatus,
 * BackendKeyData and ReadyForQuery; then the simple Query and the extended
 * protocol (Parse, Bind, Describe, Execute, Sync, Close, Flush) and
 * Terminate. A CancelRequest (a new connection) is counted; if it names a
 * connection whose query is held, that query ends with 57014, as a real
 * server would cancel it; the cancel connection is then closed.
 *
 * The query text is the script (one text column "v" per row):
 *   "rows N VALUE"         N rows of VALUE
 *   "error SQLSTATE TEXT"  an ErrorResponse when executed
 *   "hold"                 no answer until release() (1 row "released")
 *                          or a cancel request for its connection
 *   anything else          one row "1"
 * The test thread can also count connections, close one (or all) from the
 * server side, and make the first N connections report themselves
 * read-only (default_transaction_read_only=on), so that libpq with
 * target_session_attrs=read-write drops them and tries the next host.
 *
 * Commands from the test thread are carried out by the stub's thread before
 * they return, so what a test checks next is already true on the server.
 */
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace stub {

class PgStub {
public:
    PgStub()
    {
        listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        socklen_t len = sizeof a;
        if (bind(listen_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || ::listen(listen_, 64) != 0 ||
            getsockname(listen_, reinterpret_cast<sockaddr *>(&a), &len) != 0)
            return; /* port() stays 0: the tests fail to connect */
        port_ = ntohs(a.sin_port);
        if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0)
            return;
        thread_ = std::thread([this] { loop(); });
    }

    ~PgStub()
    {
        if (thread_.joinable()) {
            stop_ = true;
            wake();
            thread_.join();
        }
        for (auto &c : clients_)
            ::close(c->fd);
        ::close(listen_);
        if (wake_[0] >= 0) {
            ::close(wake_[0]);
            ::close(wake_[1]);
        }
    }
    PgStub(const PgStub &) = delete;
    PgStub &operator=(const PgStub &) = delete;

    int port() const { return port_; }
    std::string conninfo() const
    {
        return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=stub user=stub";
    }

    int accepted() const { return accepted_; }   /* connections that sent a StartupMessage */
    int cancels() const { return cancels_; }     /* CancelRequests received */
    int open_clients() const { return open_; }   /* started and not yet closed */
    int queries() const { return queries_; }     /* simple queries and Executes answered or held */
    int held() const { return held_; }           /* queries held right now */

    /* The first n connections (counted from now) report read-only. */
    void read_only_first(int n)
    {
        run([this, n] { read_only_left_ = n; });
    }
    /* Close the connection accepted as number `index` (1 = the first),
     * or every connection with index -1, from the server side. */
    void close_client(int index)
    {
        run([this, index] {
            for (auto &c : clients_)
                if (c->started && (index < 0 || c->index == index))
                    drop(*c); /* the loop closes its fd, after this turn */
        });
    }
    /* A frozen server (its processes stopped): connections are still
     * accepted by the kernel, but nothing is read or answered until thaw. */
    void freeze() { run([this] { frozen_ = true; }); }
    void thaw() { run([this] { frozen_ = false; }); }
    /* Cancel requests are carried out, but their connections left open:
     * the sender never learns that its request was taken. */
    void keep_cancel_connections() { run([this] { keep_cancels_ = true; }); }
    /* Answer every held query with one row "released". */
    void release()
    {
        run([this] {
            for (auto &c : clients_)
                if (c->holding) {
                    c->holding = false;
                    held_--;
                    answer_rows(*c, 1, "released", c->held_simple);
                    process(*c);
                }
        });
    }

private:
    struct Client {
        int fd = -1;
        int index = 0;               /* 1, 2, ... in order of StartupMessage */
        bool started = false;        /* past the startup packet */
        bool closed = false;
        int32_t pid = 0, key = 0;
        std::string in, out;
        bool skip_to_sync = false;   /* after an error in the extended protocol */
        bool holding = false;        /* a "hold" query waits: input is not read further */
        bool held_simple = false;
        std::map<std::string, std::string> statements, portals;
    };

    /* ------------------------------------------------ commands */

    void wake()
    {
        char b = 1;
        (void) !::write(wake_[1], &b, 1);
    }

    void run(std::function<void()> fn)
    {
        std::unique_lock<std::mutex> lk(mu_);
        uint64_t my = ++queued_;
        commands_.push_back(std::move(fn));
        wake();
        cv_.wait(lk, [&] { return done_ >= my || !thread_.joinable(); });
    }

    void run_commands()
    {
        std::vector<std::function<void()>> todo;
        uint64_t upto;
        {
            std::lock_guard<std::mutex> lk(mu_);
            todo.swap(commands_);
            upto = queued_;
        }
        for (auto &fn : todo)
            fn();
        for (auto &c : clients_)
            flush(*c);
        {
            std::lock_guard<std::mutex> lk(mu_);
            done_ = upto;
        }
        cv_.notify_all();
    }

    /* ------------------------------------------------ the loop */

    void loop()
    {
        while (!stop_) {
            std::vector<pollfd> fds;
            fds.push_back({frozen_ ? -1 : listen_, POLLIN, 0});
            fds.push_back({wake_[0], POLLIN, 0});
            for (auto &c : clients_)
                fds.push_back({frozen_ ? -1 : c->fd, short(POLLIN | (c->out.empty() ? 0 : POLLOUT)), 0});
            if (::poll(fds.data(), fds.size(), 1000) < 0)
                continue;
            if (fds[1].revents) {
                char buf[64];
                while (::read(wake_[0], buf, sizeof buf) > 0) {
                }
            }
            run_commands();
            for (size_t i = 2; i < fds.size(); i++) {
                Client &c = *clients_[i - 2];
                if (c.closed)
                    continue;
                if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
                    receive(c);
                if (!c.closed)
                    flush(c);
            }
            if (fds[0].revents & POLLIN) {
                int fd = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0) {
                    auto c = std::make_unique<Client>();
                    c->fd = fd;
                    clients_.push_back(std::move(c));
                }
            }
            reap();
        }
    }

    void reap()
    {
        for (size_t i = 0; i < clients_.size();) {
            if (clients_[i]->closed) {
                ::close(clients_[i]->fd);
                clients_.erase(clients_.begin() + long(i));
            } else {
                i++;
            }
        }
    }

    void drop(Client &c)
    {
        if (c.closed)
            return;
        c.closed = true;
        if (c.started)
            open_--;
        if (c.holding)
            held_--;
        c.holding = false;
        ::shutdown(c.fd, SHUT_RDWR);
    }

    void receive(Client &c)
    {
        char buf[8192];
        for (;;) {
            ssize_t n = ::read(c.fd, buf, sizeof buf);
            if (n > 0) {
                c.in.append(buf, size_t(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                drop(c);
                return;
            }
            if (errno == EAGAIN)
                break;
        }
        process(c);
    }

    void flush(Client &c)
    {
        while (!c.out.empty() && !c.closed) {
            ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
            if (n > 0)
                c.out.erase(0, size_t(n));
            else if (n < 0 && errno == EAGAIN)
                return;
            else {
                drop(c);
                return;
            }
        }
    }

    /* ------------------------------------------------ protocol */

    static int32_t get32(const std::string &s, size_t at)
    {
        uint32_t v;
        memcpy(&v, s.data() + at, 4);
        return int32_t(ntohl(v));
    }
    static int16_t get16(const std::string &s, size_t at)
    {
        uint16_t v;
        memcpy(&v, s.data() + at, 2);
        return int16_t(ntohs(v));
    }
    static std::string cstr(const std::string &s, size_t &at)
    {
        size_t end = s.find('\0', at);
        if (end == std::string::npos)
            end = s.size();
        std::string v = s.substr(at, end - at);
        at = end + 1;
        return v;
    }

    struct Msg {
        std::string body;
        explicit Msg(char type) { body += type, body.append(4, '\0'); }
        Msg &i32(int32_t v)
        {
            uint32_t n = htonl(uint32_t(v));
            body.append(reinterpret_cast<const char *>(&n), 4);
            return *this;
        }
        Msg &i16(int16_t v)
        {
            uint16_t n = htons(uint16_t(v));
            body.append(reinterpret_cast<const char *>(&n), 2);
            return *this;
        }
        Msg &str(const std::string &s)
        {
            body += s;
            body += '\0';
            return *this;
        }
        Msg &raw(const std::string &s)
        {
            body += s;
            return *this;
        }
        std::string done()
        {
            uint32_t n = htonl(uint32_t(body.size() - 1));
            memcpy(&body[1], &n, 4);
            return body;
        }
    };

    void ready(Client &c) { c.out += Msg('Z').raw("I").done(); }

    void row_description(Client &c)
    {
        c.out += Msg('T').i16(1).str("v").i32(0).i16(0).i32(25).i16(-1).i32(-1).i16(0).done();
    }

    void answer_rows(Client &c, int n, const std::string &value, bool simple)
    {
        if (simple)
            row_description(c);
        for (int i = 0; i < n; i++)
            c.out += Msg('D').i16(1).i32(int32_t(value.size())).raw(value).done();
        c.out += Msg('C').str("SELECT " + std::to_string(n)).done();
        if (simple)
            ready(c);
    }

    void error(Client &c, const std::string &sqlstate, const std::string &text, bool simple)
    {
        c.out += Msg('E').raw("S").str("ERROR").raw("V").str("ERROR").raw("C").str(sqlstate).raw("M").str(text).raw(
                               std::string(1, '\0'))
                     .done();
        if (simple)
            ready(c);
        else
            c.skip_to_sync = true;
    }

    /* Run a query as its text says. */
    void execute(Client &c, const std::string &q, bool simple)
    {
        queries_++;
        if (q.rfind("rows ", 0) == 0) {
            size_t sp = q.find(' ', 5);
            int n = std::atoi(q.substr(5, sp - 5).c_str());
            answer_rows(c, n, sp == std::string::npos ? std::string() : q.substr(sp + 1), simple);
        } else if (q.rfind("error ", 0) == 0) {
            error(c, q.substr(6, 5), q.size() > 12 ? q.substr(12) : "stub error", simple);
        } else if (q == "hold") {
            c.holding = true;
            c.held_simple = simple;
            held_++;
        } else {
            answer_rows(c, 1, "1", simple);
        }
    }

    void startup(Client &c)
    {
        for (;;) {
            if (c.in.size() < 8)
                return;
            int32_t len = get32(c.in, 0), code = get32(c.in, 4);
            if (len < 8 || c.in.size() < size_t(len))
                return;
            std::string packet = c.in.substr(0, size_t(len));
            c.in.erase(0, size_t(len));
            if (code == 80877103 || code == 80877104) { /* SSLRequest, GSSENCRequest */
                c.out += "N";
                continue;
            }
            if (code == 80877102) { /* CancelRequest */
                cancels_++;
                int32_t pid = get32(packet, 8), key = get32(packet, 12);
                for (auto &o : clients_)
                    if (o->started && !o->closed && o->pid == pid && o->key == key && o->holding) {
                        o->holding = false;
                        held_--;
                        error(*o, "57014", "canceling statement due to user request", o->held_simple);
                        process(*o);
                        flush(*o);
                    }
                if (!keep_cancels_)
                    drop(c);
                return;
            }
            c.started = true;
            c.index = ++accepted_;
            open_++;
            c.pid = 1000 + c.index;
            c.key = 0x5eed0000 + c.index;
            bool ro = read_only_left_ > 0;
            if (ro)
                read_only_left_--;
            c.out += Msg('R').i32(0).done();
            auto param = [&](const char *k, const char *v) { c.out += Msg('S').str(k).str(v).done(); };
            param("server_version", "15.0");
            param("client_encoding", "UTF8");
            param("server_encoding", "UTF8");
            param("standard_conforming_strings", "on");
            param("integer_datetimes", "on");
            param("DateStyle", "ISO, MDY");
            param("default_transaction_read_only", ro ? "on" : "off");
            param("in_hot_standby", "off");
            c.out += Msg('K').i32(c.pid).i32(c.key).done();
            ready(c);
            return;
        }
    }

    void process(Client &c)
    {
        if (!c.started) {
            startup(c);
            if (!c.started || c.closed)
                return;
        }
        while (!c.holding && !c.closed && c.in.size() >= 5) {
            char type = c.in[0];
            int32_t len = get32(c.in, 1);
            if (len < 4 || c.in.size() < size_t(len) + 1)
                return;
            std::string m = c.in.substr(5, size_t(len) - 4);
            c.in.erase(0, size_t(len) + 1);
            if (type == 'X') {
                drop(c);
                return;
            }
            if (c.skip_to_sync && type != 'S')
                continue;
            size_t at = 0;
            switch (type) {
            case 'Q': {
                std::string q = cstr(m, at);
                execute(c, q, true);
                break;
            }
            case 'P': {
                std::string name = cstr(m, at);
                c.statements[name] = cstr(m, at);
                c.out += Msg('1').done();
                break;
            }
            case 'B': {
                std::string portal = cstr(m, at);
                std::string name = cstr(m, at);
                c.portals[portal] = c.statements[name];
                c.out += Msg('2').done();
                break;
            }
            case 'D': {
                char what = m.empty() ? 'S' : m[0];
                at = 1;
                std::string name = cstr(m, at);
                if (what == 'S')
                    c.out += Msg('t').i16(0).done();
                row_description(c);
                break;
            }
            case 'E': {
                std::string portal = cstr(m, at);
                execute(c, c.portals[portal], false);
                break;
            }
            case 'C':
                c.out += Msg('3').done();
                break;
            case 'S':
                c.skip_to_sync = false;
                ready(c);
                break;
            case 'H':
                break;
            default:
                error(c, "08P01", std::string("unexpected message type ") + type, false);
                break;
            }
        }
    }

    int listen_ = -1;
    int wake_[2] = {-1, -1};
    int port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::vector<std::unique_ptr<Client>> clients_;   /* the stub's thread only */
    int read_only_left_ = 0;                          /* the stub's thread only */
    bool frozen_ = false; /* the loop's */
    bool keep_cancels_ = false;
    std::atomic<int> accepted_{0}, cancels_{0}, open_{0}, queries_{0}, held_{0};

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::function<void()>> commands_;
    uint64_t queued_ = 0, done_ = 0;
};

} // namespace stub
