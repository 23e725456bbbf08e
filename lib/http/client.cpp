// The HTTP/1.1 client: connection reuse per origin, Content-Length/chunked/close bodies.
#include "corio/http/client.hpp"

#include <iterator>
#include <map>
#include <stdexcept>
#include <vector>

#include "corio/loop.hpp"
#include "corio/tcp.hpp"
#include "corio/timeout.hpp"
#include "corio/tls.hpp"
#include "http/connection.hpp"
#include "http/parser.hpp"
#include "http/response_reader.hpp"
#include "http/url.hpp"

namespace corio::http {

url_parts parse_url(std::string_view url) {
  url_parts u;
  std::string_view rest;
  // RFC 3986 §3.1: the scheme is case-insensitive ("HTTP://", or a redirect to "Https://").
  if (iequals(url.substr(0, 7), "http://")) {
    rest = url.substr(7);
  } else if (iequals(url.substr(0, 8), "https://")) {
    rest = url.substr(8);
    u.tls = true;
    u.port = 443;
  } else {
    throw std::invalid_argument("http: unsupported URL \"" + std::string(url) +
                                "\" (expected http:// or https://)");
  }
  for (unsigned char c : url) {
    // A space, CR, LF or NUL would end the request line or forge header lines.
    if (c <= 0x20 || c == 0x7f) {
      throw std::invalid_argument("http: invalid character (space or control byte) in URL \"" +
                                  std::string(url.substr(0, 200)) + "\"");
    }
  }
  // RFC 9110 §4.2.4: the fragment is the client's own; it is never sent.
  rest = rest.substr(0, rest.find('#'));
  std::size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    u.target = std::string(rest.substr(slash));
    if (u.target.front() == '?') u.target.insert(0, "/");
  }
  if (authority.find('@') != std::string_view::npos) {
    throw std::invalid_argument("http: user info in URLs is not supported: \"" + std::string(url) +
                                "\"");
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      throw std::invalid_argument("http: bad IPv6 host in \"" + std::string(url) + "\"");
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        throw std::invalid_argument("http: bad authority in \"" + std::string(url) + "\"");
      }
      port = authority.substr(close + 2);
    }
  } else if (std::size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    // RFC 3986 §3.2.2: a host name holds no ':'; "http://::1/" was host ":" and port 1.
    if (host.find(':') != std::string_view::npos) {
      throw std::invalid_argument("http: an IPv6 host needs brackets (\"http://[::1]/\") in \"" +
                                  std::string(url) + "\"");
    }
  }
  if (host.empty()) throw std::invalid_argument("http: no host in \"" + std::string(url) + "\"");
  // RFC 3986 §3.2.2: brackets only enclose an IP literal. A host holding one ("[[a]" gave
  // "[a") named no origin that parse_url could read back (a redirect to "/x" failed).
  if (host.find_first_of("[]") != std::string_view::npos) {
    throw std::invalid_argument("http: bad host in \"" + std::string(url) + "\"");
  }
  u.host = std::string(host);
  if (!port.empty()) {
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || (value = value * 10 + static_cast<unsigned>(c - '0')) > 65535) {
        throw std::invalid_argument("http: bad port in \"" + std::string(url) + "\"");
      }
    }
    // TCP has no port 0 to connect to: refused here, not by a failed connect.
    if (value == 0) {
      throw std::invalid_argument("http: bad port 0 in \"" + std::string(url) + "\"");
    }
    u.port = static_cast<std::uint16_t>(value);
  }
  return u;
}

struct client::state {
  client_options options;
  std::unique_ptr<tls_context> default_tls;
  std::map<std::string, std::vector<corio::stream>> idle;  // origin -> kept-alive streams

  /// "https://host:port" (IPv6 in brackets): the pool's key, and the base of a redirect.
  static std::string origin(const url_parts& u) {
    return (u.tls ? "https://" : "http://") +
           (u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host) + ":" +
           std::to_string(u.port);
  }

  tls_context& tls() {
    if (options.tls != nullptr) return *options.tls;
    if (!default_tls) default_tls = std::make_unique<tls_context>(tls_role::client);
    return *default_tls;
  }
};

client::client(client_options options) : state_(std::make_unique<state>()) {
  state_->options = std::move(options);
}
client::~client() = default;

std::size_t client::idle_connections() const noexcept {
  std::size_t n = 0;
  for (const auto& [origin, streams] : state_->idle) {
    for (const corio::stream& s : streams) n += s.closed() ? 0 : 1;
  }
  return n;
}

namespace detail {

task<std::string> read_response_head(corio::stream& s, const client_options& o, bool* began) {
  // Up to the first empty line, not to "\r\n\r\n": a server may end lines with a bare LF
  // (RFC 9112 §2.2; parse_response_head accepts it), and its head then ends at "\n\n" or
  // "\n\r\n"; reading on to a later "\r\n\r\n" took body bytes for fields, or waited for
  // the close. Line by line, so that the search stays O(n) however the bytes arrive (a
  // regex read would search the whole buffer again at every receive).
  std::string head;
  try {
    for (;;) {
      std::size_t room = 0;  // no limit, as read_until's max_bytes, if max_header_bytes is 0
      if (o.max_header_bytes != 0) {
        if (head.size() >= o.max_header_bytes) break;
        room = o.max_header_bytes - head.size();
      }
      const std::size_t start = head.size();
      head += co_await s.read_until("\n", room);
      if (began != nullptr) *began = true;
      const std::string_view line = std::string_view(head).substr(start);
      if (line == "\n" || line == "\r\n") co_return head;
    }
  } catch (const stream_closed_error& e) {
    if (e.code() != errc::unsatisfiable_read) throw;
  }
  throw protocol_error(
      431, "HTTP: response head exceeds max_header_bytes=" + std::to_string(o.max_header_bytes));
}

task<received_response> read_response(corio::stream& s, std::string head, const std::string& method,
                                      const client_options& o) {
  response_head parsed = parse_response_head(head);
  // 100 Continue and friends; 101 Switching Protocols is final (the connection now speaks
  // another protocol: it is returned, never reused).
  for (int interim = 1; parsed.status >= 100 && parsed.status < 200 && parsed.status != 101;
       ++interim) {
    if (interim > o.max_interim_responses) {
      throw protocol_error(
          400, "HTTP: more than max_interim_responses=" + std::to_string(o.max_interim_responses) +
                   " interim (1xx) responses to one request");
    }
    head = co_await read_response_head(s, o);
    parsed = parse_response_head(head);
  }
  body_framing framing = response_framing(parsed.headers, parsed.status, method);
  received_response out;
  client_response& r = out.response;
  r.status = parsed.status;
  r.reason = std::move(parsed.reason);
  r.version_minor = parsed.version_minor;
  r.headers = std::move(parsed.headers);
  r.body = co_await read_body(s, framing, o.max_body_bytes);
  // Not reused either: a response framed by both Transfer-Encoding and Content-Length (RFC
  // 9112 §6.3: a sign of smuggling; the chunked framing was used, then the connection ends).
  const bool both_framings =
      r.headers.count("Transfer-Encoding") > 0 && r.headers.count("Content-Length") > 0;
  // Nor with bytes past the response (a body longer than its Content-Length: they answer no
  // request of ours), nor an HTTP/1.0 response with Transfer-Encoding (RFC 9112 §6.1: its
  // framing is faulty, the connection is closed after it), keep-alive or not.
  const bool te_in_http10 = r.version_minor == 0 && r.headers.count("Transfer-Encoding") > 0;
  out.reusable = framing.kind != body_kind::until_close && !s.closed() && s.buffered_bytes() == 0 &&
                 r.status != 101 && !both_framings && !te_in_http10 &&
                 (r.version_minor == 1 ? !r.headers.has_token("Connection", "close")
                                       : r.headers.has_token("Connection", "keep-alive"));
  co_return out;
}

/// RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
static bool is_scheme(std::string_view s) noexcept {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (s.empty() || !alpha(s.front())) return false;
  for (char c : s) {
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

std::string resolve_location(const url_parts& base, std::string_view location) {
  if (auto hash = location.find('#'); hash != std::string_view::npos) {
    location = location.substr(0, hash);
  }
  // RFC 3986 §4.2: a reference that starts with a scheme ("https:", "ftp:", "mailto:") is
  // absolute, taken as it is (parse_url then refuses an unsupported one), never a relative
  // path: "ftp://x/f" was requested as "/dir/ftp://x/f" from the same origin.
  const std::string_view scheme = location.substr(0, location.find(':'));
  if (scheme.size() < location.size() && is_scheme(scheme)) return std::string(location);
  if (location.substr(0, 2) == "//") return (base.tls ? "https:" : "http:") + std::string(location);
  const std::string origin = client::state::origin(base);
  if (!location.empty() && location.front() == '/') return origin + std::string(location);
  const std::string_view target = base.target;
  const std::string_view path = target.substr(0, target.find('?'));
  if (location.empty()) return origin + std::string(target);
  if (location.front() == '?') return origin + std::string(path) + std::string(location);
  return origin + std::string(path.substr(0, path.rfind('/') + 1)) + std::string(location);
}

}  // namespace detail

namespace {

/// A connection to an origin, and whether it was taken from the idle pool (kept alive after an
/// earlier response) rather than opened for this request.
struct opened_connection {
  corio::stream stream;
  bool reused = false;
};

/// A kept connection from the pool if `reuse` and one is there, else a new one.
task<opened_connection> open_connection(client::state& st, const url_parts& u, bool reuse) {
  opened_connection c;  // named, not a braced temporary in co_return (g++ 12, docs/http.md)
  auto& pool = st.idle[client::state::origin(u)];
  while (reuse && !pool.empty()) {
    corio::stream s = std::move(pool.back());
    pool.pop_back();
    if (!s.closed() && s.buffered_bytes() == 0) {
      s.set_close_callback({});  // in use again: no longer watched (keep_idle)
      c.stream = std::move(s);
      c.reused = true;
      co_return c;
    }
  }
  tcp_stream plain = co_await tcp_stream::connect(u.host, u.port, {.nodelay = true});
  if (u.tls) {
    c.stream = co_await std::move(plain).start_tls(st.tls(), u.host);
  } else {
    c.stream = std::move(plain);
  }
  co_return c;
}

/// Puts a connection into the pool for the next request to `origin`.
/// Why a close callback: with one, an idle stream watches its transport (S40), so the
/// server's close of a kept connection (its idle timeout) closes it, and its fd, at once; else
/// it would wait in CLOSE_WAIT until the next request to that origin or the client's end, one
/// dead fd per origin a long-lived client ever talked to. Closed ones are dropped here. Past
/// options.max_idle_per_origin kept for `origin`, `s` is closed instead (its fd with it).
void keep_idle(client::state& st, const std::string& origin, corio::stream s) {
  for (auto it = st.idle.begin(); it != st.idle.end();) {
    std::erase_if(it->second, [](const corio::stream& kept) { return kept.closed(); });
    it = it->second.empty() && it->first != origin ? st.idle.erase(it) : std::next(it);
  }
  auto& pool = st.idle[origin];
  if (pool.size() >= st.options.max_idle_per_origin) {
    s.close();
    return;
  }
  s.set_close_callback([] {});
  pool.push_back(std::move(s));
}

/// RFC 9110 §9.2.2: the methods whose intended effect is the same however often they are
/// sent, so that a request may be repeated when its connection failed before any answer.
bool idempotent(const std::string& method) noexcept {
  for (std::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    if (method == m) return true;
  }
  return false;
}

/// Throws std::invalid_argument before anything is sent if the method, a field or the
/// User-Agent would break the request line or inject header lines.
void check_request(const std::string& method, const http::headers& fields,
                   const std::string& user_agent) {
  if (!detail::is_method_token(method)) {
    throw std::invalid_argument("http::client: invalid method \"" + method.substr(0, 64) +
                                "\" (a token is required)");
  }
  for (const auto& [name, value] : fields.fields()) {
    detail::check_outgoing_field(name, value, "http::client");
  }
  detail::check_outgoing_field("User-Agent", user_agent, "http::client_options");
}

std::string serialize_request(const std::string& method, const url_parts& u,
                              const http::headers& fields, const std::string& body,
                              const std::string& user_agent) {
  std::string out = method + " " + u.target + " HTTP/1.1\r\n";
  if (fields.count("Host") == 0) {
    bool default_port = u.port == (u.tls ? 443 : 80);
    bool v6 = u.host.find(':') != std::string::npos;
    out += "Host: " + (v6 ? "[" + u.host + "]" : u.host) +
           (default_port ? "" : ":" + std::to_string(u.port)) + "\r\n";
  }
  if (!user_agent.empty() && fields.count("User-Agent") == 0) {
    out += "User-Agent: " + user_agent + "\r\n";
  }
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  for (const auto& [name, value] : fields.fields()) {
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding")) continue;
    out += name + ": " + value + "\r\n";
  }
  out += "\r\n";
  out += body;
  return out;
}

/// One request/response exchange; returns the response and whether the stream can be reused.
task<client_response> exchange(client::state& st, const std::string& method, const url_parts& u,
                               const http::headers& fields, const std::string& body) {
  const client_options& o = st.options;
  check_request(method, fields, o.user_agent);
  for (int attempt = 0;; ++attempt) {
    // A retry goes on a new connection: the other kept ones may have been closed with the
    // one that failed (the server's idle timeout, or a restart).
    opened_connection c = co_await open_connection(st, u, attempt == 0);
    corio::stream& s = c.stream;
    s.write(serialize_request(method, u, fields, body, o.user_agent));
    std::string head;
    bool began = false;  // a line of the head was consumed: the response has begun
    try {
      head = co_await detail::read_response_head(s, o, &began);
    } catch (const stream_closed_error&) {
      // Why retry only then (RFC 9110 §9.2.2, as Go's net/http and urllib3 do): a server may
      // close a kept-alive connection while the request is on its way (its idle timeout), and
      // such a request was not processed. Only a connection taken from the pool can have
      // been closed that way; a new one that fails is the server's answer, reported. Once a
      // byte of the response arrived (S39: it stays buffered after the close), or for a
      // method that is not idempotent (POST, PATCH…), the request may have been acted on:
      // it is not sent again.
      if (attempt == 0 && c.reused && !began && s.buffered_bytes() == 0 && idempotent(method)) {
        continue;
      }
      throw;
    }
    detail::received_response r = co_await detail::read_response(s, std::move(head), method, o);
    // Kept unless read_response said no, or the request said Connection: close (the server
    // closes it, RFC 9112 §9.6, and need not say so in its answer).
    if (r.reusable && !fields.has_token("Connection", "close")) {
      keep_idle(st, client::state::origin(u), std::move(s));
    }
    co_return std::move(r.response);
  }
}

task<client_response> request_with_redirects(client::state& st, std::string method, std::string url,
                                             http::headers fields, std::string body) {
  for (int redirects = 0;; ++redirects) {
    url_parts u = parse_url(url);
    client_response r = co_await exchange(st, method, u, fields, body);
    bool redirect =
        r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308;
    if (!st.options.follow_redirects || !redirect || !r.headers.get("Location")) co_return r;
    if (redirects >= st.options.max_redirects) {
      throw protocol_error(
          310, "HTTP: more than " + std::to_string(st.options.max_redirects) + " redirects");
    }
    url = detail::resolve_location(u, *r.headers.get("Location"));
    const url_parts next = parse_url(url);  // throws std::invalid_argument for a bad Location
    if (client::state::origin(next) != client::state::origin(u)) {
      // Credentials given for one origin are not handed to another (nor over a downgrade
      // from https to http); a caller's Host named the old origin.
      for (std::string_view name : {"Authorization", "Proxy-Authorization", "Cookie", "Host"}) {
        fields.remove(name);
      }
    }
    // RFC 9110 §15.4: 303 is followed with GET (a HEAD stays a HEAD), as 301 and 302 after a
    // POST are.
    if ((r.status == 303 && method != "HEAD") ||
        ((r.status == 301 || r.status == 302) && method == "POST")) {
      method = "GET";
      body.clear();
      for (std::string_view name : {"Content-Type", "Content-Length", "Transfer-Encoding"}) {
        fields.remove(name);
      }
    }
  }
}

}  // namespace

task<client_response> client::request(std::string method, std::string url, http::headers fields,
                                      std::string body) {
  return with_timeout(state_->options.timeout,
                      request_with_redirects(*state_, std::move(method), std::move(url),
                                             std::move(fields), std::move(body)));
}

task<client_response> client::get(std::string url) {
  return request("GET", std::move(url), http::headers(), std::string());
}

task<client_response> client::post(std::string url, std::string body, std::string content_type) {
  http::headers fields;
  fields.add("Content-Type", std::move(content_type));
  return request("POST", std::move(url), std::move(fields), std::move(body));
}

}  // namespace corio::http
