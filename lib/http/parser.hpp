// lib/http/parser.hpp - strict HTTP/1.1 message parsing (RFC 9112); no I/O, fuzzable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "corio/http/message.hpp"

namespace corio::http::detail {

/// The request line and header fields of a request.
struct request_head {
  std::string method;
  std::string target;
  int version_minor = 1;
  http::headers headers;
};

/// The status line and header fields of a response.
struct response_head {
  int version_minor = 1;
  int status = 0;
  std::string reason;
  http::headers headers;
};

/// How a message body is delimited.
enum class body_kind { none, length, chunked, until_close };
struct body_framing {
  body_kind kind = body_kind::none;
  std::uint64_t length = 0;
};

/// Parses a request head ending in CRLF CRLF. Throws protocol_error: 400 for malformed
/// syntax (bare LF, obs-fold, bad tokens, missing or repeated Host in HTTP/1.1), 505 for an
/// unsupported version.
request_head parse_request_head(std::string_view head);
/// Parses a response head ending at its first empty line (bare LF line ends tolerated from
/// servers; each obs-fold replaced by one SP, RFC 9112 §5.2). Throws protocol_error 400 if
/// malformed (whitespace before the first field included), bytes after that empty line included
/// (a reader that read them as the head would lose them), or a control byte in the reason.
response_head parse_response_head(std::string_view head);
/// Framing of a request body. Throws protocol_error 400 for Content-Length with
/// Transfer-Encoding, repeated or invalid Content-Length (request smuggling), 501 for a
/// transfer coding other than chunked.
body_framing request_framing(const http::headers& fields);
/// Framing of a response body to a request with `method`.
body_framing response_framing(const http::headers& fields, int status, std::string_view method);
/// Longest chunk-size line (size and extensions, without CRLF) accepted; past it: 400.
inline constexpr std::size_t max_chunk_line = 4096;
/// Most trailer fields, and longest trailer line (without CRLF), accepted; past them: 431.
inline constexpr std::size_t max_trailer_fields = 100;
inline constexpr std::size_t max_trailer_line = 8192;

/// Parses a chunk-size line (without CRLF): hex digits, then chunk extensions, which are
/// checked against RFC 9112 §7.1.1 (`;name`, `;name=token`, `;name="quoted"`, BWS around
/// `;` and `=`) and ignored. Throws protocol_error 400 on anything else (whitespace before
/// the size or after it without an extension, control bytes, bare CR or LF) or on overflow
/// past 2^63. Used by the streaming body reader and by decode_chunked alike.
std::uint64_t parse_chunk_size(std::string_view line);
/// Checks the trailer field line number `index` (from 0, without CRLF) of a chunked body as a
/// header field line. Throws protocol_error 400 if malformed (no colon, bad name, obs-fold,
/// control bytes), 431 past max_trailer_fields fields or max_trailer_line bytes.
void check_trailer_line(std::string_view line, std::size_t index);

/// Checks a header field before it is sent: throws std::invalid_argument naming the field
/// (`what` says whose: "http::response", "http::client") unless `name` is a token and `value`
/// holds no control byte but HTAB. CR, LF or NUL would let the text forge fields or whole
/// messages (header injection).
void check_outgoing_field(std::string_view name, std::string_view value, std::string_view what);
/// True if `method` is a token (RFC 9110 §9.1).
bool is_method_token(std::string_view method) noexcept;
/// Checks free text sent on a start line (a reason phrase): no control byte but HTAB.
/// Throws std::invalid_argument "`what`: <part> ..." otherwise.
void check_outgoing_text(std::string_view text, std::string_view part, std::string_view what);

/// Decodes a complete chunked body held in memory (tests and fuzzing), with the same line
/// parsers and limits as the server's streaming reader; returns the body and sets `consumed`
/// to the bytes used including trailers. Throws protocol_error.
std::string decode_chunked(std::string_view in, std::size_t max_body, std::size_t& consumed);

}  // namespace corio::http::detail
