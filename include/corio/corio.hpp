// corio/corio.hpp - everything corio offers, in one include.
#pragma once

#include "corio/diagnostics.hpp"
#include "corio/errors.hpp"
#include "corio/http.hpp"
#include "corio/io.hpp"
#include "corio/loop.hpp"
#include "corio/per_core.hpp"
#include "corio/pipe.hpp"
#include "corio/signal.hpp"
#include "corio/stream.hpp"
#include "corio/subprocess.hpp"
#include "corio/task.hpp"
#include "corio/tcp.hpp"
#include "corio/timeout.hpp"
#include "corio/tls.hpp"
#include "corio/version.hpp"
#include "corio/when.hpp"

/// @namespace corio
/// @brief Coroutine tasks, the event loop, and streams with Tornado IOStream semantics.

/// @namespace corio::io
/// @brief Low-level awaitable I/O operations (one syscall-style result each; see io.hpp).

/// @namespace corio::http
/// @brief HTTP/1.1 client and server built on corio streams.
