// corio/http.hpp - the HTTP/1.1 server and client.
#pragma once

#include "corio/http/client.hpp"
#include "corio/http/message.hpp"
#include "corio/http/server.hpp"
