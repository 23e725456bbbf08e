#include "http/parser.hpp"

#include <charconv>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace corio::http::detail {
namespace {

[[noreturn]] void bad(const std::string& what, int status = 400) {
  throw protocol_error(status, "HTTP: " + what);
}

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

/// Splits the head into lines; strict: every line must end in CRLF, no bare CR or LF.
/// Returns where it stopped: after the line line_fn returned false for, or the end.
template <class F>
std::size_t for_each_line(std::string_view head, bool strict, F&& line_fn) {
  std::size_t pos = 0;
  while (pos < head.size()) {
    std::size_t lf = head.find('\n', pos);
    if (lf == std::string_view::npos) bad("header block does not end with CRLF");
    std::size_t end = lf;
    if (end > pos && head[end - 1] == '\r') {
      --end;
    } else if (strict) {
      bad("bare LF line ending in the header block");
    }
    std::string_view line = head.substr(pos, end - pos);
    if (strict && line.find('\r') != std::string_view::npos) bad("bare CR in the header block");
    pos = lf + 1;
    if (!line_fn(line)) return pos;
  }
  return pos;
}

/// A control byte, which no field value, reason phrase or chunk extension may hold (HTAB may).
bool is_control(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

bool starts_with_whitespace(std::string_view line) {
  return !line.empty() && (line.front() == ' ' || line.front() == '\t');
}

void check_value(std::string_view value) {
  for (unsigned char c : value) {
    if (is_control(c)) bad("control character in a header value");
  }
}

/// One field line (RFC 9112 §5): name ":" OWS value OWS; returns name and trimmed value.
std::pair<std::string_view, std::string_view> parse_field_line(std::string_view line) {
  if (starts_with_whitespace(line)) bad("obsolete line folding (obs-fold) is not accepted");
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) bad("header line without a colon");
  std::string_view name = line.substr(0, colon);
  if (!is_token(name)) bad("invalid header field name \"" + std::string(name) + "\"");
  std::string_view value = trim_ows(line.substr(colon + 1));
  check_value(value);
  return {name, value};
}

/// Requests (`strict`): CRLF line ends only, obs-fold refused (a server may, RFC 9112 §5.2).
/// Responses: bare LF line ends tolerated (§2.2), and each obs-fold replaced by one SP, as
/// §5.2 requires of a user agent (the line's outer whitespace dropped, a blank line adding
/// nothing); a fold before the first field has nothing to continue and is refused (§2.2).
void parse_fields(std::string_view head, bool strict, http::headers& out,
                  std::string_view& first_line) {
  bool first = true;
  bool done = false;
  std::vector<http::headers::field> fields;  // folds may still extend the last one
  std::size_t end = for_each_line(head, strict, [&](std::string_view line) {
    if (first) {
      first_line = line;
      first = false;
      return true;
    }
    if (line.empty()) {
      done = true;
      return false;
    }
    if (!strict && starts_with_whitespace(line)) {
      if (fields.empty()) bad("whitespace before the first header field");
      std::string_view more = trim_ows(line);
      check_value(more);
      std::string& value = fields.back().second;
      if (!more.empty()) value.append(value.empty() ? "" : " ").append(more);
      return true;
    }
    auto [name, value] = parse_field_line(line);
    fields.emplace_back(std::string(name), std::string(value));
    return true;
  });
  if (!done) bad("header block is not terminated by an empty line");
  for (auto& [name, value] : fields) out.add(std::move(name), std::move(value));
  // Bytes after the empty line would be dropped unparsed: the caller read them as the head.
  if (end != head.size()) bad("bytes after the empty line that ends the header block");
}

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/// Checks the chunk extensions after a chunk size (RFC 9112 §7.1.1):
///   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
///   chunk-ext-name = token; chunk-ext-val = token / quoted-string
/// Anything else, control bytes and bare CR or LF included, is refused (request smuggling:
/// a lenient parser and a strict one would find different chunk boundaries).
void check_chunk_extensions(std::string_view ext) {
  std::size_t pos = 0;
  auto skip_bws = [&] {
    while (pos < ext.size() && (ext[pos] == ' ' || ext[pos] == '\t')) ++pos;
  };
  auto token = [&] {
    std::size_t start = pos;
    while (pos < ext.size() && is_tchar(static_cast<unsigned char>(ext[pos]))) ++pos;
    return pos > start;
  };
  auto quoted_string = [&] {
    ++pos;  // the opening quote
    while (pos < ext.size()) {
      auto c = static_cast<unsigned char>(ext[pos++]);
      if (c == '"') return true;
      if (c == '\\') {  // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        if (pos == ext.size()) return false;
        if (is_control(static_cast<unsigned char>(ext[pos++]))) return false;
      } else if (is_control(c)) {  // qdtext
        return false;
      }
    }
    return false;  // no closing quote
  };
  while (pos < ext.size()) {
    skip_bws();
    if (pos == ext.size() || ext[pos] != ';') bad("invalid chunk extension");
    ++pos;
    skip_bws();
    if (!token()) bad("invalid chunk extension name");
    std::size_t after_name = pos;
    skip_bws();
    if (pos < ext.size() && ext[pos] == '=') {
      ++pos;
      skip_bws();
      bool ok = pos < ext.size() && ext[pos] == '"' ? quoted_string() : token();
      if (!ok) bad("invalid chunk extension value");
    } else {
      pos = after_name;  // BWS is allowed only before "=" or ";"
    }
  }
}

int parse_version(std::string_view v) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
      v[7] < '0' || v[7] > '9') {
    bad("malformed HTTP version \"" + std::string(v) + "\"");
  }
  if (v[5] != '1') bad("unsupported HTTP version \"" + std::string(v) + "\"", 505);
  return v[7] - '0' >= 1 ? 1 : 0;
}

bool parse_decimal(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

request_head parse_request_head(std::string_view head) {
  request_head r;
  std::string_view line;
  parse_fields(head, true, r.headers, line);
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    bad("malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (!is_token(method)) bad("invalid method");
  if (target.empty()) bad("empty request target");
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7f) bad("invalid character in the request target");
  }
  r.version_minor = parse_version(line.substr(sp2 + 1));
  r.method = method;
  r.target = target;
  if (r.version_minor == 1 && r.headers.count("Host") != 1) {
    bad("an HTTP/1.1 request needs exactly one Host header");
  }
  return r;
}

response_head parse_response_head(std::string_view head) {
  response_head r;
  std::string_view line;
  parse_fields(head, false, r.headers, line);
  if (line.size() < 12 || line[8] != ' ') bad("malformed status line");
  r.version_minor = parse_version(line.substr(0, 8));
  std::string_view code = line.substr(9, 3);
  std::uint64_t status = 0;
  if (!parse_decimal(code, status) || status < 100 || status > 999) bad("malformed status code");
  r.status = static_cast<int>(status);
  if (line.size() > 12) {
    if (line[12] != ' ') bad("malformed status line");
    r.reason = line.substr(13);
    // reason-phrase = *( HTAB / SP / VCHAR / obs-text ) (RFC 9112 §4): a NUL or bare CR
    // would reach the caller's logs or a proxy's own status line.
    for (unsigned char c : r.reason) {
      if (is_control(c)) bad("control character in the reason phrase");
    }
  }
  return r;
}

body_framing request_framing(const http::headers& fields) {
  std::size_t te = fields.count("Transfer-Encoding");
  std::size_t cl = fields.count("Content-Length");
  if (te > 0 && cl > 0) bad("both Content-Length and Transfer-Encoding (request smuggling)");
  if (te > 0) {
    if (te > 1 || !iequals(trim_ows(*fields.get("Transfer-Encoding")), "chunked")) {
      bad("unsupported transfer coding", 501);
    }
    return {body_kind::chunked, 0};
  }
  if (cl > 1) bad("repeated Content-Length (request smuggling)");
  if (cl == 1) {
    std::uint64_t n = 0;
    if (!parse_decimal(*fields.get("Content-Length"), n)) bad("invalid Content-Length");
    return n == 0 ? body_framing{body_kind::none, 0} : body_framing{body_kind::length, n};
  }
  return {body_kind::none, 0};
}

body_framing response_framing(const http::headers& fields, int status, std::string_view method) {
  if (method == "HEAD" || (status >= 100 && status < 200) || status == 204 || status == 304) {
    return {body_kind::none, 0};
  }
  if (fields.count("Transfer-Encoding") > 0) {
    // RFC 9112 §6.3: chunked frames the body only as the final coding ("gzip, chunked");
    // otherwise ("chunked, gzip", "gzip") the body runs until the connection closes.
    std::string_view last_field;
    for (const auto& [name, value] : fields.fields()) {
      if (iequals(name, "Transfer-Encoding")) last_field = value;
    }
    std::string_view final_coding = last_field.substr(last_field.rfind(',') + 1);
    if (iequals(trim_ows(final_coding), "chunked")) return {body_kind::chunked, 0};
    return {body_kind::until_close, 0};
  }
  if (fields.count("Content-Length") > 0) {
    std::uint64_t n = 0;
    std::string_view first = *fields.get("Content-Length");
    for (const auto& [name, value] : fields.fields()) {
      if (iequals(name, "Content-Length") && value != first) bad("conflicting Content-Length");
    }
    if (!parse_decimal(first, n)) bad("invalid Content-Length");
    return {body_kind::length, n};
  }
  return {body_kind::until_close, 0};
}

std::uint64_t parse_chunk_size(std::string_view line) {
  std::size_t digits = 0;
  std::uint64_t value = 0;
  for (; digits < line.size() && is_hex_digit(line[digits]); ++digits) {
    char c = line[digits];
    int d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    if (value > (std::uint64_t{1} << 59)) bad("chunk size overflows");
    value = value * 16 + static_cast<std::uint64_t>(d);
  }
  if (digits == 0) {
    bad(line.empty() ? std::string("empty chunk size")
                     : "invalid chunk size line \"" + std::string(line.substr(0, 64)) + "\"");
  }
  check_chunk_extensions(line.substr(digits));
  return value;
}

namespace {
/// `text` for an error message, control bytes and non-ASCII bytes shown as \xNN.
std::string printable(std::string_view text) {
  std::string out;
  for (unsigned char c : text.substr(0, 64)) {
    if (c < 0x20 || c >= 0x7f) {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > 64) out += "...";
  return out;
}
}  // namespace

bool is_method_token(std::string_view method) noexcept { return is_token(method); }

void check_outgoing_field(std::string_view name, std::string_view value, std::string_view what) {
  if (!is_token(name)) {
    throw std::invalid_argument(std::string(what) + ": invalid header field name \"" +
                                printable(name) + "\" (a token is required)");
  }
  for (unsigned char c : value) {
    if (is_control(c)) {
      throw std::invalid_argument(
          std::string(what) + ": the value of header \"" + std::string(name) +
          "\" contains a control character (CR, LF, NUL...): \"" + printable(value) + "\"");
    }
  }
}

void check_outgoing_text(std::string_view text, std::string_view part, std::string_view what) {
  for (unsigned char c : text) {
    if (is_control(c)) {
      throw std::invalid_argument(std::string(what) + ": the " + std::string(part) +
                                  " contains a control character (CR, LF, NUL...): \"" +
                                  printable(text) + "\"");
    }
  }
}

void check_trailer_line(std::string_view line, std::size_t index) {
  if (index >= max_trailer_fields || line.size() > max_trailer_line) {
    bad("trailer section too large (at most " + std::to_string(max_trailer_fields) +
            " fields of at most " + std::to_string(max_trailer_line) + " bytes)",
        431);
  }
  parse_field_line(line);
}

std::string decode_chunked(std::string_view in, std::size_t max_body, std::size_t& consumed) {
  std::string body;
  std::size_t pos = 0;
  auto line = [&](std::size_t limit, int status) {
    std::size_t crlf = in.find("\r\n", pos);
    if (crlf == std::string_view::npos) bad("chunked body cut short");
    if (crlf - pos > limit) bad("chunk-size or trailer line too long", status);
    std::string_view l = in.substr(pos, crlf - pos);
    pos = crlf + 2;
    return l;
  };
  for (;;) {
    std::uint64_t size = parse_chunk_size(line(max_chunk_line, 400));
    if (size == 0) break;
    if (size > max_body - body.size()) bad("chunked body exceeds max_body_bytes", 413);
    if (in.size() - pos < size + 2) bad("chunk data cut short");
    body.append(in.substr(pos, size));
    pos += size;
    if (in.substr(pos, 2) != "\r\n") bad("chunk data not followed by CRLF");
    pos += 2;
  }
  // Trailer fields: checked like header fields, then ignored (as read_chunked_body does).
  for (std::size_t index = 0;; ++index) {
    std::string_view trailer = line(max_trailer_line, 431);
    if (trailer.empty()) break;
    check_trailer_line(trailer, index);
  }
  consumed = pos;
  return body;
}

}  // namespace corio::http::detail
