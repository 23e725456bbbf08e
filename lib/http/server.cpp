// The HTTP/1.1 server: a plain user of streams (architecture.md), one coroutine per connection.
#include "corio/http/server.hpp"

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "corio/loop.hpp"
#include "corio/tcp.hpp"
#include "corio/timeout.hpp"
#include "corio/tls.hpp"
#include "http/connection.hpp"
#include "http/parser.hpp"

namespace corio::http {

struct server::state {
  handler handle;
  server_options options;
  bool stopping = false;
  std::size_t active = 0;
  std::uint64_t served = 0;
  std::vector<tcp_listener*> listeners;  // of the serve() calls running
  /// A connection linked into a list of the server (the node lives in the connection's
  /// coroutine frame: linking a connection allocates nothing).
  struct stream_link {
    corio::stream* stream = nullptr;
    stream_link* previous = nullptr;
    stream_link* next = nullptr;
  };
  stream_link* idle = nullptr;         // connections waiting for their next request
  stream_link* connections = nullptr;  // every connection being served
  /// When shutdown's grace period ends (max: not shutting down).
  std::chrono::steady_clock::time_point grace_deadline =
      std::chrono::steady_clock::time_point::max();
  /// The deadline a loop timer is armed for (shutdown() called without a running loop arms
  /// none: serve() does, when it starts waiting).
  std::chrono::steady_clock::time_point timer_deadline =
      std::chrono::steady_clock::time_point::max();
  bool grace_over = false;     // the grace period ended: every connection was closed
  bool closing_timer = false;  // the closing_time timer is armed
  bool gave_up = false;        // closing_time passed: serve() no longer waits
  /// serve() waiting for the last connection to end (or for closing_time to pass), if it is.
  struct waiter : corio::detail::ready_node {
    event_loop* loop = nullptr;
    std::coroutine_handle<> serve;
    void run_ready() override { serve.resume(); }
  };
  std::vector<waiter*> drained;  // one per serve() call waiting
};

namespace {

/// "Date:" value, formatted at most once per second (RFC 9110 IMF-fixdate).
const std::string& http_date() {
  thread_local std::time_t cached_second = 0;
  thread_local std::string cached;
  std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached = buf;
    cached_second = now;
  }
  return cached;
}

/// The Content-Length a handler gave an answer to HEAD without a body, if it gave one: the
/// length a GET would have had (RFC 9110 §9.3.2, §8.6), which the handler need not build the
/// body to know. Throws std::invalid_argument unless it is one field of 1 to 18 digits.
std::optional<std::string_view> declared_head_length(const response& r) {
  std::optional<std::string_view> length;
  for (const auto& [name, value] : r.headers.fields()) {
    if (!iequals(name, "Content-Length")) continue;
    const bool digits = !value.empty() && value.size() <= 18 &&
                        value.find_first_not_of("0123456789") == std::string::npos;
    if (length || !digits) {
      throw std::invalid_argument(
          "http::response: the Content-Length of an answer to HEAD must be one field of 1 to "
          "18 digits, not \"" +
          value.substr(0, 64) + "\"");
    }
    length = value;
  }
  return length;
}

/// The status line and fields of `r`. Throws std::invalid_argument for a field or reason
/// phrase that would inject header lines (detail::check_outgoing_field), a status that is
/// not three digits, or (`head_only`) a bad Content-Length of the handler's (see
/// declared_head_length).
std::string serialize_head(const response& r, std::string_view server_name, bool keep_alive,
                           int version_minor, bool chunked, bool omit_length,
                           bool head_only = false) {
  if (r.status < 100 || r.status > 999) {  // RFC 9110 §15: three digits
    throw std::invalid_argument("http::response: status " + std::to_string(r.status) +
                                " is not a three-digit status code");
  }
  std::string out;
  out.reserve(160 + r.body.size());
  out += version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  if (r.reason.empty()) {
    out += reason_phrase(r.status);
  } else {
    detail::check_outgoing_text(r.reason, "reason phrase", "http::response");
    out += r.reason;
  }
  out += "\r\n";
  if (!server_name.empty() && r.headers.count("Server") == 0) {
    out.append("Server: ").append(server_name).append("\r\n");
  }
  if (r.headers.count("Date") == 0) out.append("Date: ").append(http_date()).append("\r\n");
  bool no_body_status = r.status < 200 || r.status == 204 || r.status == 304;
  std::optional<std::string_view> head_length;
  if (head_only && !no_body_status && r.body.empty()) head_length = declared_head_length(r);
  if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  } else if (head_length) {
    out.append("Content-Length: ").append(*head_length).append("\r\n");
  } else if (!no_body_status && !omit_length) {
    out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (version_minor == 0) {
    out += "Connection: keep-alive\r\n";
  }
  for (const auto& [name, value] : r.headers.fields()) {
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
        iequals(name, "Connection")) {
      continue;  // framing is ours to decide
    }
    detail::check_outgoing_field(name, value, "http::response");
    out.append(name).append(": ").append(value).append("\r\n");
  }
  out += "\r\n";
  return out;
}

/// Answers a protocol error and lets the caller close the connection.
void send_error(corio::stream& s, const server_options& o, int status, const std::string& why) {
  response r = response::text(status, std::string(reason_phrase(status)) + ": " + why + "\n");
  std::string out = serialize_head(r, o.server_name, false, 1, false, false);
  out += r.body;
  s.write(std::move(out));
}

/// How long, and how many bytes, a lingering close reads and discards at most.
constexpr std::chrono::seconds linger_time{1};
constexpr std::size_t linger_bytes = 16 * 1024 * 1024;

/// Ends a connection after the response that closes it: its peer may still be sending (a body
/// that was not read, an error answered mid-request, requests pipelined after the last one).
/// Why: closing a socket with unread received bytes makes the kernel send RST instead of FIN;
/// a client still sending its body then fails with ECONNRESET, usually before it has read the
/// answer (RFC 9112 §9.6). So: send the answer (within idle_timeout), shut down the sending
/// side (the client reads EOF after the answer), and read and discard what the client still
/// sends, for at most linger_time and linger_bytes, before closing.
/// A stream that shutdown() half-closed already cannot take the write("") that waits for the
/// answer to leave: the discarding then goes on, in steps of linger_time, while the answer is
/// still being sent (at most idle_timeout), since close() would drop what is unsent.
task<void> linger_close(corio::stream& s, const server_options& o) {
  try {
    const auto start = std::chrono::steady_clock::now();
    task<void> flushed;
    try {
      flushed = s.write("");
    } catch (const std::logic_error&) {
      // half-closed by shutdown(): the end of the stream follows what is queued
    }
    if (flushed) co_await with_timeout(o.idle_timeout, std::move(flushed));
    s.shutdown_write();
    std::vector<std::byte> discard(64 * 1024);
    auto deadline = std::chrono::steady_clock::now() + linger_time;
    for (std::size_t discarded = 0; discarded < linger_bytes;) {
      const auto now = std::chrono::steady_clock::now();
      if (s.writing()) {
        deadline = std::max(deadline, std::min(now + linger_time, start + o.idle_timeout));
      }
      const auto left = deadline - now;
      if (left <= std::chrono::nanoseconds::zero()) break;
      try {
        discarded += co_await with_timeout(left, s.read_into(std::span(discard), true));
      } catch (const timeout_error&) {
        // the deadline was reached: it may have moved on if the answer is still being sent
      }
    }
  } catch (const corio::error&) {
    // the peer's EOF (stream_closed_error), time is up, or the connection failed
  } catch (const std::logic_error&) {
    // a stream that cannot be half-closed (a pipe): closed at once
  }
  s.close();
}

/// Reads a request head whose end is not buffered yet (detail::read_delimited): answered 431
/// as soon as more than max_header_bytes have arrived without the head ending, whatever
/// streams.max_buffer_size is.
task<std::string> read_head(corio::stream& s, const server_options& o) {
  const std::string too_long =
      "request head exceeds " + std::to_string(o.max_header_bytes) + " bytes";
  co_return co_await detail::read_delimited(s, "\r\n\r\n", o.max_header_bytes, 431, too_long);
}

/// Links a connection into one of the server's lists while it lives (every connection, or
/// the idle ones while they wait for a request), so that shutdown can find it.
struct linked_stream {
  server::state::stream_link*& head;
  server::state::stream_link entry;
  linked_stream(server::state::stream_link*& list, corio::stream* s)
      : head(list), entry{s, nullptr, list} {
    if (head != nullptr) head->previous = &entry;
    head = &entry;
  }
  linked_stream(const linked_stream&) = delete;
  linked_stream& operator=(const linked_stream&) = delete;
  ~linked_stream() {
    (entry.previous != nullptr ? entry.previous->next : head) = entry.next;
    if (entry.next != nullptr) entry.next->previous = entry.previous;
  }
};

/// The streams of a list, copied: closing one wakes its connection a turn later (S6), but a
/// copy also survives a close that ends a connection at once.
std::vector<corio::stream*> streams_of(const server::state::stream_link* list) {
  std::vector<corio::stream*> out;
  for (; list != nullptr; list = list->next) out.push_back(list->stream);
  return out;
}

/// The end of the grace period: every connection still open is closed; the reads and writes
/// of its handler, response producer or lingering close fail with stream_closed_error.
void close_connections(server::state& st) {
  for (corio::stream* s : streams_of(st.connections)) {
    s->close(std::make_error_code(std::errc::operation_canceled));
  }
}

/// How long serve() still waits, once the grace period ended and every connection was
/// closed, for the connections to end. Those whose handler (or producer, or lingering close)
/// was reading or writing its connection end within a few loop turns, as the closing fails
/// their operations; a handler awaiting something else (a timer, an upstream, an fd) would
/// keep serve() waiting without end: serve() returns without it (see server::shutdown).
constexpr std::chrono::milliseconds closing_time{100};

/// Resumes serve() if it waits for the connections to end (through the loop's ready queue:
/// never inside the caller).
void wake_serve(server::state& st) noexcept {
  for (server::state::waiter* w : std::exchange(st.drained, {})) w->loop->schedule(*w);
}

/// Arms the timer after which serve() stops waiting for the connections closed at the end of
/// the grace period.
void arm_closing_timer(const std::shared_ptr<server::state>& keep, event_loop& loop) {
  if (keep->closing_timer) return;
  keep->closing_timer = true;
  loop.call_later(closing_time, [weak = std::weak_ptr<server::state>(keep)] {
    if (std::shared_ptr<server::state> alive = weak.lock()) {
      alive->gave_up = true;
      wake_serve(*alive);
    }
  });
}

/// The grace period ended: closes every connection (once), and lets serve() wait closing_time
/// more for them to end.
void end_grace(const std::shared_ptr<server::state>& keep) {
  server::state& st = *keep;
  if (st.grace_over) return;  // a sooner deadline came first
  st.grace_over = true;
  close_connections(st);
  if (event_loop* loop = event_loop::current_or_null()) arm_closing_timer(keep, *loop);
}

/// Arms a loop timer that ends the grace period at st.grace_deadline.
/// Why not cancelled when everything ended sooner (or a later call set a sooner end): a
/// timer handle kept in the state could outlive its loop. The timer holds a weak reference
/// and, if the state is still there, finds the grace period over, or nothing left to close.
void arm_grace_timer(const std::shared_ptr<server::state>& keep, event_loop& loop) {
  server::state& st = *keep;
  st.timer_deadline = st.grace_deadline;
  const auto left = st.grace_deadline - std::chrono::steady_clock::now();
  loop.call_later(std::chrono::duration_cast<std::chrono::nanoseconds>(left),
                  [weak = std::weak_ptr<server::state>(keep)] {
                    if (std::shared_ptr<server::state> alive = weak.lock()) end_grace(alive);
                  });
}

/// Suspends serve() until wake_serve(); destroying it while suspended (serve()'s task
/// destroyed, or its loop) withdraws it.
struct drained_awaiter {
  server::state& st;
  server::state::waiter node;
  explicit drained_awaiter(server::state& state) : st(state) {}
  drained_awaiter(const drained_awaiter&) = delete;
  drained_awaiter& operator=(const drained_awaiter&) = delete;
  ~drained_awaiter() { std::erase(st.drained, &node); }
  bool await_ready() const noexcept { return st.active == 0 || st.gave_up; }
  void await_suspend(std::coroutine_handle<> serve) noexcept {
    node.loop = &event_loop::current();
    node.serve = serve;
    st.drained.push_back(&node);
  }
  void await_resume() const noexcept {}
};

}  // namespace

server::server(handler h, server_options options) : state_(std::make_shared<state>()) {
  if (!options.server_name.empty()) {
    detail::check_outgoing_field("Server", options.server_name, "http::server_options");
  }
  state_->handle = std::move(h);
  state_->options = std::move(options);
}

server::~server() = default;

std::size_t server::active_connections() const noexcept { return state_->active; }
std::uint64_t server::requests_served() const noexcept { return state_->served; }

void server::shutdown(std::chrono::nanoseconds grace_period) {
  state& st = *state_;
  st.stopping = true;
  for (tcp_listener* listener : st.listeners) listener->close();
  for (corio::stream* s : streams_of(st.idle)) {
    if (s->writing()) {
      // Not idle yet: its last response is still being sent, and close() would drop the rest
      // (S36). The end of the stream follows the response instead; the client's close (or its
      // next request, answered by a lingering close) ends the connection, or the grace period.
      try {
        s->shutdown_write();
        continue;
      } catch (const std::logic_error&) {
        // a pipe, or TLS before its handshake ended: closed as idle
      }
    }
    s->close();
  }
  const auto deadline = corio::detail::deadline_after(grace_period);
  if (deadline >= st.grace_deadline) return;  // an earlier call set a sooner end
  st.grace_deadline = deadline;
  if (grace_period <= std::chrono::nanoseconds::zero()) {
    end_grace(state_);
  } else if (event_loop* loop = event_loop::current_or_null()) {
    arm_grace_timer(state_, *loop);
  }  // without a running loop, serve() arms the timer when it starts waiting
}

namespace {
task<void> serve_one(std::shared_ptr<server::state> keep, corio::stream s);
}  // namespace

task<void> server::serve(tcp_listener& listener) {
  std::shared_ptr<state> keep = state_;
  state& st = *keep;
  // Why a list: one server may serve several listeners (TCP and a unix socket), and
  // shutdown() must close them all, or the other serve() calls accept for ever.
  st.listeners.push_back(&listener);
  struct listed_listener {  // unlisted however serve() ends (its task may be destroyed)
    server::state& st;
    tcp_listener* listener;
    ~listed_listener() { std::erase(st.listeners, listener); }
  } listed{st, &listener};
  if (st.stopping) listener.close();  // shutdown() came first
  event_loop& loop = event_loop::current();
  while (!st.stopping) {
    tcp_stream connection;
    bool pause = false;
    try {
      connection = co_await listener.accept(st.options.streams);
    } catch (const stream_closed_error&) {
      break;  // the listener was closed: shutdown
    } catch (const corio::error& e) {
      // D1: EMFILE/ENFILE/ENOBUFS: say so, pause, and try again instead of spinning.
      std::fprintf(stderr, "corio http: accept failed: %s; retrying in 50 ms\n", e.what());
      pause = true;
    }
    if (pause) {
      co_await sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    connection.set_nodelay(true);
    if (st.options.tls != nullptr) {
      loop.spawn(serve_one(keep, tls_stream::accept(std::move(connection), *st.options.tls)));
    } else {
      loop.spawn(serve_one(keep, std::move(connection)));
    }
  }
  // Waits, with no timer of its own, until the last connection ends (its end wakes this) or
  // closing_time after the grace period ended (that timer does).
  if (st.active > 0 && !st.gave_up) {
    if (!st.grace_over && st.grace_deadline != std::chrono::steady_clock::time_point::max() &&
        st.timer_deadline != st.grace_deadline) {
      arm_grace_timer(keep, loop);  // shutdown() was called without a running loop
    }
    if (st.grace_over) arm_closing_timer(keep, loop);
    while (!(st.active == 0 || st.gave_up)) co_await drained_awaiter(st);
  }
}

task<void> server::serve_connection(corio::stream s) {
  // The connection keeps the state alive even if the server object is destroyed first.
  return serve_one(state_, std::move(s));
}

namespace {
/// A body larger than this is sent in slices of this size (see serve_one).
std::size_t large_body(const server_options& o) noexcept {
  return std::max<std::size_t>(o.max_unsent_response_bytes, 64 * 1024);
}

task<void> serve_one(std::shared_ptr<server::state> keep, corio::stream s) {
  server::state& st = *keep;
  const server_options& o = st.options;
  ++st.active;
  struct active_guard {
    server::state& st;
    ~active_guard() {
      if (--st.active == 0) wake_serve(st);
    }
  } guard{st};
  linked_stream listed(st.connections, &s);
  connection_state conn;
  conn.stream = &s;
  conn.options = &o;
  // Response bytes queued since the write queue was last seen empty: a bound on what is still
  // unsent, kept without asking the stream after every response (pipelining back-pressure).
  std::size_t queued_since_drain = 0;
  bool linger = false;  // close with linger_close: the peer may still be sending
  try {
    for (;;) {
      // Shutting down: the client may be sending a request that will not be answered while
      // the last response is still on its way (linger_close).
      if (st.stopping) {
        linger = true;
        break;
      }
      // Wait for the first byte of the next request (S17: read_until("") consumes nothing).
      if (s.buffered_bytes() == 0) {
        linked_stream idle(st.idle, &s);
        try {
          co_await with_timeout(o.idle_timeout, s.read_until(""));
        } catch (const timeout_error&) {
          break;
        }
        continue;  // stopping meanwhile?
      }
      std::string head;
      // Usually the whole head is buffered (one receive brought it, or it was pipelined):
      // taken at once, with no timer.
      std::size_t end = detail::delimited_end({}, s.peek(), "\r\n\r\n");
      if (end != std::string_view::npos && end <= o.max_header_bytes) {
        head = co_await s.read_bytes(end);
      } else {
        try {
          head = co_await with_timeout(o.header_timeout, read_head(s, o));
        } catch (const timeout_error&) {
          send_error(s, o, 408, "the request head did not arrive in time");
          linger = true;
          break;
        } catch (const protocol_error& e) {
          send_error(s, o, e.status(), e.what());  // 431
          linger = true;
          break;
        }
      }
      request req;
      bool keep_alive = true;
      try {
        detail::request_head parsed = detail::parse_request_head(head);
        req.method = std::move(parsed.method);
        req.target = std::move(parsed.target);
        req.version_minor = parsed.version_minor;
        req.headers = std::move(parsed.headers);
        conn.framing = detail::request_framing(req.headers);
        if (conn.framing.kind == detail::body_kind::length &&
            conn.framing.length > o.max_body_bytes) {
          throw protocol_error(
              413, "HTTP: body of " + std::to_string(conn.framing.length) +
                       " bytes exceeds max_body_bytes=" + std::to_string(o.max_body_bytes));
        }
        conn.expect_continue = req.version_minor == 1 &&
                               req.headers.has_token("Expect", "100-continue") &&
                               conn.framing.kind != detail::body_kind::none;
        conn.continue_sent = false;
        conn.final_head_sent = false;
        conn.body_failure = nullptr;
        req.connection = &conn;
        if (!conn.expect_continue) co_await req.read_body();
      } catch (const protocol_error& e) {
        send_error(s, o, e.status(), e.what());
        linger = true;
        break;
      } catch (const timeout_error&) {
        send_error(s, o, 408, "the request body did not arrive in time");
        linger = true;
        break;
      }
      keep_alive = req.version_minor == 1 ? !req.headers.has_token("Connection", "close")
                                          : req.headers.has_token("Connection", "keep-alive");
      // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means its framing may be
      // faulty (a 1.0 intermediary may not have understood it): close after the response.
      if (req.version_minor == 0 && req.headers.count("Transfer-Encoding") > 0) keep_alive = false;
      response res;
      std::exception_ptr handler_failure;
      try {
        res = co_await st.handle(req);
      } catch (...) {
        handler_failure = std::current_exception();
      }
      if (handler_failure) {
        // Only a failure of this connection's own request (its body, read by the handler
        // after 100 Continue) is answered as such. Anything else the handler throws is its
        // own failure, protocol_error or stream_closed_error included: those may come from
        // an upstream connection (an http::client used by the handler), and must neither
        // drop this connection without an answer nor answer with the upstream's status.
        if (conn.body_failure) {
          try {
            std::rethrow_exception(conn.body_failure);
          } catch (const protocol_error& e) {
            send_error(s, o, e.status(), e.what());
            linger = true;
          } catch (...) {
            // this connection failed (stream_closed_error): nobody to answer
          }
        } else {
          send_error(s, o, 500, "the handler failed");
          event_loop::current().report_exception(handler_failure);
          linger = true;
        }
        break;
      }
      // A body the handler did not read (Expect: 100-continue refused) cannot be skipped
      // safely: answer, then close.
      if (!req.body_read && conn.framing.kind != detail::body_kind::none) keep_alive = false;
      if (st.stopping) keep_alive = false;
      bool head_only = req.method == "HEAD";
      // RFC 9110 §6.4.1: a 1xx, 204 or 304 response ends with its head. A body given anyway
      // would be read as the start of the next response: it is dropped, producer included.
      if (res.status < 200 || res.status == 204 || res.status == 304) {
        res.body.clear();
        res.producer = nullptr;
      }
      bool chunked = static_cast<bool>(res.producer) && !head_only && req.version_minor == 1;
      if (res.producer && !head_only && req.version_minor == 0) {
        keep_alive = false;  // 1.0: the body is delimited by closing
      }
      std::string out;
      try {
        out = serialize_head(res, o.server_name, keep_alive, req.version_minor, chunked,
                             static_cast<bool>(res.producer) && !chunked, head_only);
      } catch (const std::invalid_argument&) {
        // A field with CR or LF would forge headers (or the status is not three digits): the
        // handler's error, answered as one.
        send_error(s, o, 500, "the handler failed");
        event_loop::current().report_exception(std::current_exception());
        linger = true;
        break;
      }
      ++st.served;
      conn.final_head_sent = true;
      queued_since_drain += out.size();
      if (res.producer) {
        s.write(std::move(out));
        if (!head_only) {
          if (chunked) {
            body_writer writer(s, true, o.idle_timeout);
            bool own_body_failed = false;
            try {
              co_await res.producer(writer);  // each chunk is awaited: nothing piles up
            } catch (...) {
              if (!conn.body_failure) throw;
              own_body_failed = true;
            }
            if (own_body_failed) {
              // The producer read this request's body and that failed (it did not come in
              // time, or was too large): the client's fault, as in a handler, so not
              // reported. The head is out: the body is cut (no last chunk), then closed.
              linger = true;
              break;
            }
            s.write("0\r\n\r\n");
          } else {
            // HTTP/1.0 has no chunked coding: the body is delimited by closing.
            body_writer writer(s, false, o.idle_timeout);
            co_await res.producer(writer);
          }
        }
      } else if (head_only || res.body.size() <= large_body(o)) {
        if (!head_only) {
          out += res.body;
          queued_since_drain += res.body.size();
        }
        s.write(std::move(out));  // gathered with the other writes of this loop turn
      } else {
        // Why in slices, each given idle_timeout as a chunk of a streamed response is: waiting
        // for the whole body to leave within idle_timeout (the back-pressure wait below, or
        // linger_close) cut a client that reads steadily but needs longer than that for it.
        s.write(std::move(out));
        body_writer writer(s, false, o.idle_timeout);
        const std::string_view body = res.body;
        for (std::size_t at = 0; at < body.size(); at += large_body(o)) {
          co_await writer.write(body.substr(at, large_body(o)));
        }
        queued_since_drain = 0;  // all sent
      }
      // Why: a client that pipelines requests without reading the answers would otherwise
      // make the server queue every response (10,000 GETs of 1 MiB: 10 GB). Past the mark,
      // wait until the queue is sent before handling the next request. A client that sends
      // one request at a time reads each answer first: the mark is never reached, or the
      // queue has drained by then, and no request waits here.
      if (queued_since_drain > o.max_unsent_response_bytes) {
        if (s.writing()) co_await with_timeout(o.idle_timeout, s.write(""));
        queued_since_drain = 0;
      }
      if (!keep_alive) {
        // Why linger after every response that ends the connection: the client may still be
        // sending (a body it was refused, requests pipelined after a Connection: close or an
        // HTTP/1.0 request, or anything else never read), and closing with unread bytes sends
        // RST, which can destroy the response on its way (linger_close).
        linger = true;
        break;
      }
    }
  } catch (const stream_closed_error&) {
  } catch (const timeout_error&) {
  }
  if (linger) co_await linger_close(s, o);
  s.close();
}

}  // namespace

}  // namespace corio::http
