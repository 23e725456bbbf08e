// libFuzzer: the client's URL handling, corio::http::parse_url and the redirect resolution
// (lib/http/url.hpp: resolve_location, RFC 3986 §5.2); checks invariants, not only "does not
// crash".
//
// Input: the whole input is a URL for parse_url; it is also split at its first LF into a
// base URL and a Location, and the Location is resolved against that base (if parse_url
// takes it) and against two fixed bases.
//
// Checks, on every input:
//  - parse_url accepts or throws std::invalid_argument, nothing else; it never accepts a URL
//    with a space or control byte, with user info ("user@"), with a scheme other than
//    http/https (in any case), or without a host;
//  - a parsed URL has a host with no space, control byte, '/', '?', '#', '@', '[' or ']'
//    (brackets only enclose an IPv6 host), a ':' only if it was in brackets, a port 1..65535 (the
//    scheme's default when none is given), a target starting with '/' that is the URL's path and
//    query as given (a bare "?q" gets its '/'), without the fragment;
//  - re-serialised (scheme://host:port + target, an IPv6 host in brackets, the port left out
//    or not) and parsed again it gives the same parts;
//  - resolve_location never throws, and parse_url takes its result or throws
//    std::invalid_argument; a Location with a scheme (RFC 3986 §3.1: "ftp:", "mailto:") is
//    taken as it is (an unsupported one is then refused, never read as a relative path); an
//    absolute-path ("/x"), query ("?q"), empty or relative-path Location without a space or
//    control byte is accepted and keeps the base's scheme, host and port, with the target
//    RFC 3986 §5.2.2 gives (without dot-segment removal); a scheme-relative one ("//h/x")
//    keeps the base's scheme.
// On a failure the target prints why and aborts, so libFuzzer keeps the input. Reproduce:
// build/fuzz/test/fuzz_url <file>. Seeds: test/fuzz/corpus/url/ (a URL, or "base\nLocation").
#include "http/url.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "corio/http/client.hpp"
#include "corio/http/message.hpp"

namespace http = corio::http;

namespace {

std::string printable(std::string_view s, std::size_t max = 300) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string_view input_text;  // for failure messages

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "url: INVARIANT: %s\ninput: \"%s\"\n", why.c_str(),
               printable(input_text, 2000).c_str());
  std::abort();
}

std::string describe(const http::url_parts& u) {
  return std::string(u.tls ? "https" : "http") + " host \"" + printable(u.host) + "\" port " +
         std::to_string(u.port) + " target \"" + printable(u.target) + "\"";
}

/// A space or a control byte: what would end a request line or forge a header line.
bool has_space_or_control(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool same(const http::url_parts& a, const http::url_parts& b) {
  return a.tls == b.tls && a.host == b.host && a.port == b.port && a.target == b.target;
}

/// The scheme's length (without the "://") if `url` starts with http:// or https:// in any
/// case, else 0.
std::size_t http_scheme(std::string_view url) {
  if (http::iequals(url.substr(0, 7), "http://")) return 4;
  if (http::iequals(url.substr(0, 8), "https://")) return 5;
  return 0;
}

/// RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ':'.
bool has_rfc3986_scheme(std::string_view ref) {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (ref.empty() || !alpha(ref[0])) return false;
  for (std::size_t i = 1; i < ref.size(); ++i) {
    const char c = ref[i];
    if (c == ':') return true;
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.') return false;
  }
  return false;
}

void check_parsed(std::string_view url, const http::url_parts& u);

/// parse_url's answer: the parts, or nullopt for std::invalid_argument; anything else fails.
std::optional<http::url_parts> parse(std::string_view url) {
  std::optional<http::url_parts> u;
  try {
    u = http::parse_url(url);
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  } catch (const std::exception& e) {
    fail("parse_url(\"" + printable(url) +
         "\") threw something else than invalid_argument: " + e.what());
  }
  check_parsed(url, *u);
  return u;
}

/// The URL of `u`, with its port always (`explicit_port`) or only when not the default.
std::string serialize(const http::url_parts& u, bool explicit_port) {
  const bool v6 = u.host.find(':') != std::string::npos;
  std::string out =
      std::string(u.tls ? "https://" : "http://") + (v6 ? "[" + u.host + "]" : u.host);
  if (explicit_port || u.port != (u.tls ? 443 : 80)) out += ":" + std::to_string(u.port);
  return out + u.target;
}

/// Invariants of a URL parse_url accepted.
void check_parsed(std::string_view url, const http::url_parts& u) {
  const std::string what = "parse_url(\"" + printable(url) + "\") = " + describe(u) + ": ";
  const std::size_t scheme = http_scheme(url);
  if (scheme == 0) fail(what + "accepted without http:// or https://");
  if (u.tls != (scheme == 5)) fail(what + "wrong scheme");
  if (has_space_or_control(url)) fail(what + "accepted a space or control byte");
  const std::string_view rest = url.substr(scheme + 3);
  const std::string_view no_fragment = rest.substr(0, rest.find('#'));
  const std::size_t authority_end = no_fragment.find_first_of("/?");
  const std::string_view authority = no_fragment.substr(0, authority_end);
  if (authority.find('@') != std::string_view::npos) fail(what + "accepted user info");
  if (u.host.empty()) fail(what + "empty host");
  if (has_space_or_control(u.host)) fail(what + "space or control byte in the host");
  if (u.host.find_first_of("/?#@[]") != std::string::npos) {
    fail(what + "a delimiter ('/', '?', '#', '@', '[' or ']') in the host");
  }
  if (u.host.find(':') != std::string::npos && authority.substr(0, 1) != "[") {
    fail(what + "an IPv6 host without brackets");
  }
  if (u.port == 0) fail(what + "port 0");
  if (authority.find(':') == std::string_view::npos && u.port != (u.tls ? 443 : 80)) {
    fail(what + "no port given but not the scheme's default");
  }
  // The target is the path and query as given, without the fragment.
  std::string expected_target(authority_end == std::string_view::npos
                                  ? std::string_view()
                                  : no_fragment.substr(authority_end));
  if (expected_target.empty() || expected_target.front() == '?') expected_target.insert(0, "/");
  if (u.target != expected_target) {
    fail(what + "target is not \"" + printable(expected_target) + "\"");
  }
  // Round trip.
  for (bool explicit_port : {true, false}) {
    const std::string again = serialize(u, explicit_port);
    http::url_parts v;
    try {
      v = http::parse_url(again);
    } catch (const std::exception& e) {
      fail(what + "its serialisation \"" + printable(again) + "\" is refused: " + e.what());
    }
    if (!same(u, v)) {
      fail(what + "its serialisation \"" + printable(again) + "\" parses as " + describe(v));
    }
  }
}

/// resolve_location's result for `location` against `base`, and its invariants.
void check_resolution(const http::url_parts& base, std::string_view location) {
  std::string resolved;
  try {
    resolved = http::detail::resolve_location(base, location);
  } catch (const std::exception& e) {
    fail("resolve_location threw: " + std::string(e.what()));
  }
  const std::string what = "resolve_location(" + describe(base) + ", \"" + printable(location) +
                           "\") = \"" + printable(resolved) + "\": ";
  const std::optional<http::url_parts> u = parse(resolved);
  const std::string_view ref = location.substr(0, location.find('#'));
  const bool clean = !has_space_or_control(ref);
  auto same_origin = [&](const std::string& expected_target) {
    if (!clean) {
      if (u) fail(what + "accepted with a space or control byte");
      return;
    }
    if (!u) fail(what + "refused");
    if (u->tls != base.tls || u->host != base.host || u->port != base.port) {
      fail(what + "not the base's scheme, host and port: " + describe(*u));
    }
    if (u->target != expected_target) {
      fail(what + "target is not \"" + printable(expected_target) + "\"");
    }
  };
  const std::string_view path = std::string_view(base.target).substr(0, base.target.find('?'));
  if (http_scheme(ref) != 0 && ref.size() > http_scheme(ref) + 3) {
    if (resolved != ref) fail(what + "an absolute http(s) Location changed");
  } else if (ref.substr(0, 2) == "//") {
    if (u && u->tls != base.tls) fail(what + "a scheme-relative Location changed the scheme");
  } else if (has_rfc3986_scheme(ref)) {
    // RFC 3986 §4.2, §5.2.2: a reference with a scheme is absolute, never a relative path
    // ("ftp://x/f" or "mailto:a@b" read as "/dir/ftp://x/f" requested another resource).
    if (resolved != ref) fail(what + "a Location with a scheme was not taken as it is");
  } else if (ref.empty()) {
    same_origin(base.target);
  } else if (ref.front() == '/') {
    same_origin(std::string(ref));
  } else if (ref.front() == '?') {
    same_origin(std::string(path) + std::string(ref));
  } else {
    same_origin(std::string(path.substr(0, path.rfind('/') + 1)) + std::string(ref));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  input_text = in;
  const bool whole_accepted = parse(in).has_value();
  if (whole_accepted && in.find('\n') != std::string_view::npos) fail("accepted a LF");

  const std::size_t lf = in.find('\n');
  const std::string_view location = lf == std::string_view::npos ? in : in.substr(lf + 1);
  if (lf != std::string_view::npos) {
    if (std::optional<http::url_parts> base = parse(in.substr(0, lf))) {
      check_resolution(*base, location);
    }
  }
  static const http::url_parts fixed[2] = {
      http::parse_url("http://example.com/dir/page?q=1"),
      http::parse_url("https://[2001:db8::1]:8443"),
  };
  for (const http::url_parts& base : fixed) check_resolution(base, location);
  return 0;
}
