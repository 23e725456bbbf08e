// A line chat server: every line a client sends goes to every other connected client.
// Usage: chat_server [PORT]   (port 0 picks a free one). Try it with two `nc 127.0.0.1 PORT`.
#include <corio/corio.hpp>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <string>

// One loop on one thread: coroutines never run at the same time, so no lock is needed.
std::list<corio::tcp_stream*> clients;

void send_to_others(const corio::tcp_stream* sender, const std::string& line) {
  for (corio::tcp_stream* client : clients) {
    if (client == sender) continue;
    try {
      client->write(line);  // not awaited: queued, leaves with this loop turn's other writes
    } catch (const corio::stream_buffer_full_error&) {
      client->close();  // 1 MiB behind: a client that does not read is dropped
    }
  }
}

corio::task<void> serve(corio::tcp_stream client) {
  auto me = clients.insert(clients.end(), &client);
  client.write("welcome: " + std::to_string(clients.size()) + " online\n");
  try {
    for (;;) send_to_others(&client, co_await client.read_until("\n", 4096));
  } catch (const corio::stream_closed_error&) {  // gone, or a line longer than 4096 bytes
  }
  clients.erase(me);
}

corio::task<void> accept_loop(corio::tcp_listener& listener) {
  for (;;) {
    auto client = co_await listener.accept({.max_write_buffer_size = 1 << 20});
    corio::event_loop::current().spawn(serve(std::move(client)));
  }
}

int main(int argc, char** argv) {
  corio::event_loop loop;
  auto listener = corio::tcp_listener::bind("127.0.0.1", argc > 1 ? std::atoi(argv[1]) : 7000);
  std::printf("listening on %s\n", listener.local_endpoint().to_string().c_str());
  std::fflush(stdout);
  loop.run(accept_loop(listener));
}
