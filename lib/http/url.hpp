// lib/http/url.hpp - how the client resolves a redirect's Location against the URL it asked;
// shared with the fuzz target test/fuzz/url.cpp, so that it runs the client's own code.
#pragma once

#include <string>
#include <string_view>

#include "corio/http/client.hpp"

namespace corio::http::detail {

/// The absolute URL a Location header names, resolved against the request's URL (RFC 3986
/// §5.2, without dot-segment removal): with a scheme ("https://h/x", also "ftp:..." or
/// "mailto:...", taken as they are, RFC 3986 §4.2), scheme-relative ("//host/x"),
/// absolute-path ("/x"), query-only ("?q") or relative to the request's directory ("next").
/// The fragment is dropped (it is never sent). The result is not checked: parse_url accepts
/// it or throws std::invalid_argument (an unsupported scheme, a space or control byte...).
std::string resolve_location(const url_parts& base, std::string_view location);

}  // namespace corio::http::detail
