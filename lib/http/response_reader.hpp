// lib/http/response_reader.hpp - how the client reads a response from its connection; shared
// with the fuzz target test/fuzz/http_response.cpp, so that it runs the client's own code.
#pragma once

#include <string>

#include "corio/http/client.hpp"
#include "corio/stream.hpp"

namespace corio::http::detail {

/// A response read by read_response, and whether its connection may carry another request.
struct received_response {
  client_response response;
  bool reusable = false;
};

/// Reads one response head (interim or final), up to and including its first empty line
/// (lines end in CRLF or a bare LF). Throws protocol_error 431 for a head longer than
/// max_header_bytes, stream_closed_error if the connection ends first. Sets `*began` (if
/// given) once bytes of the head were consumed: they are no longer in the stream's buffer.
task<std::string> read_response_head(corio::stream& s, const client_options& o,
                                     bool* began = nullptr);

/// Parses `head` (from read_response_head), skips interim 1xx responses (101 is final; at
/// most o.max_interim_responses of them, then protocol_error 400), then reads the body its
/// framing gives for a request with `method`. Throws protocol_error for a malformed response,
/// stream_closed_error if the connection ends before the body does.
task<received_response> read_response(corio::stream& s, std::string head, const std::string& method,
                                      const client_options& o);

}  // namespace corio::http::detail
