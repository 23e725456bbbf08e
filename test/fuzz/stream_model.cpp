// libFuzzer: the real stream against the reference model (test/support/stream_model.hpp),
// with fuzzer-chosen peer chunking and stream operations, on io_uring and on epoll.
//
// Input: byte 0 picks the backend (bit 0), the transport (bit 1: unix socket pair or pipe),
// read_chunk_size (bits 2-4) and the fault-injecting backend (bit 5, followed by 2 bytes of
// fault seed; bit 6: its plan leaves io_uring the multishot receives); then a sequence of ops, each
// an opcode byte (low 4 bits: the op, high 4 bits: flags) followed by its argument bytes; a missing
// byte reads as 0. test/fuzz/stream_model_seeds.py writes the seed corpus in this format.
//
// The peer queues its chunks on its own stream in call order (S4, S28) and so never blocks
// the test; every byte it queued eventually becomes readable, and the model's `rest` is what
// it queued and the reader has not read. A read the model says can complete is awaited
// (with a 2 s safety limit) and checked; a read the model says must wait stays pending while
// later ops run: more peer chunks or a peer close may decide it (checked then), or it is
// withdrawn (its task destroyed, or with_timeout: S13) or failed by a local close (S37).
// While a read is pending, every other read must fail with logic_error (S8). After every
// close the stream's buffer is known exactly (buffered_bytes() before close(), or after a
// max_bytes failure) and must equal the model; at the end everything left is read with
// read_until_close and must be exactly the model's rest (S12: nothing dropped, duplicated or
// reordered, also by withdrawn reads).
//
// On a mismatch the target prints the op log and aborts, so libFuzzer keeps the input.
// Reproduce: build/fuzz/test/fuzz_stream_model <crash-file>; STREAM_MODEL_TRACE=1 prints
// the op log of every input.
// One event loop per backend lives for the whole process (inputs with faults get their own,
// so that the fault schedule depends on the input only); each input uses new streams, awaits
// or destroys every task it started, and leaves nothing on the loop (open fds are counted).
#include "support/stream_model.hpp"

#include <dirent.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/fault_backend.hpp"
#include "corio/corio.hpp"
#include "support/fuzz_leak_check.hpp"
#include "support/observe.hpp"

using namespace corio;
using namespace std::chrono_literals;
using corio::testing::delimiters;
using corio::testing::model;
using corio::testing::observe;
using corio::testing::observed;
using corio::testing::pattern_spec;
using corio::testing::patterns;
using corio::testing::prediction;
using corio::testing::printable;

namespace {

constexpr std::size_t max_total_bytes = 256 << 10;  // peer data per input: keeps runs cheap
constexpr std::chrono::seconds safety_limit{2};     // a read the model says completes

/// The fuzz input as a stream of bytes; past the end every byte reads as 0.
struct input_reader {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos = 0;
  bool done() const { return pos >= size; }
  std::uint8_t byte() { return pos < size ? data[pos++] : 0; }
  std::size_t u16() {
    std::size_t lo = byte();
    return lo | (std::size_t{byte()} << 8);
  }
};

/// Peer content: literal bytes over a small alphabet, or filler with delimiter tokens.
constexpr char alphabet[8] = {'a', 'b', 'x', '\n', '\r', '\0', 'a', 'b'};
constexpr std::string_view tokens[] = {"\n", "\r\n", "\r\n\r\n", std::string_view("\0", 1),  "x",
                                       "ax", "aax",  "\r",       std::string_view("\0x", 2), "\n\n",
                                       "xx", "bab"};

// Not instrumented: its per-byte branches and stores say nothing about the stream and,
// instrumented, took a sixth of the run time.
__attribute__((no_sanitize("coverage", "address"))) std::string generated(std::size_t size,
                                                                          std::uint64_t seed,
                                                                          unsigned density) {
  std::string out(size + 4, 'a');  // room for a token that starts at size - 1
  char* p = out.data();
  std::uint64_t state = seed * 0x9e3779b97f4a7c15ULL + 1;
  std::size_t i = 0;
  while (i < size) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    if ((state & 0xff) < density) {
      for (char c : tokens[(state >> 8) % std::size(tokens)]) p[i++] = c;
    } else {
      p[i++] = (state >> 20) & 1 ? 'a' : 'b';
    }
  }
  out.resize(size);
  return out;
}

/// read_into as a string-valued task; checks that nothing past the count was written (S25).
/// Lazy: destroying it before it runs destroys `op`, which withdraws the read.
task<std::string> into_string(task<std::size_t> op, std::shared_ptr<std::vector<std::byte>> span,
                              std::size_t n) {
  std::size_t k = co_await std::move(op);
  if (k > n) throw std::runtime_error("read_into returned more than the span holds");
  for (std::size_t j = k; j < span->size(); ++j) {
    if ((*span)[j] != std::byte{0xEE}) {
      throw std::runtime_error("S25: read_into wrote past its count " + std::to_string(k));
    }
  }
  co_return std::string(reinterpret_cast<const char*>(span->data()), k);
}

/// The read slot's op, as the model needs it to predict the result.
struct read_spec {
  enum kind_t { until, regex, bytes, until_close } kind = bytes;
  std::string_view delimiter;
  const pattern_spec* pattern = nullptr;
  std::size_t max_bytes = 0;
  std::size_t n = 0;
  bool partial = false;
  bool into = false;
};

/// Closes the peer once everything it queued is sent (the model: EOF after all of `rest`).
task<void> close_peer(stream& peer) {
  try {
    co_await peer.write("");
  } catch (const corio::error&) {
    // The reader closed first (EPIPE / ECONNRESET): the peer is closed already.
  }
  peer.close();
}

class runner {
 public:
  runner(input_reader& in, bool pipe) : in_(in), pipe_(pipe) {}

  task<void> run(stream_options options) {
    if (pipe_) {
      auto [r, w] = make_pipe(options);
      reader_ = std::move(r);
      peer_ = std::move(w);
    } else {
      auto [a, b] = stream_pair(options);
      reader_ = std::move(a);
      peer_ = std::move(b);
    }
    log_ = pipe_ ? "pipe" : "socketpair";
    log_ += " read_chunk_size=" + std::to_string(reader_.options().read_chunk_size) + "\n";
    while (!in_.done()) co_await step();
    co_await finish();
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    std::fprintf(stderr, "stream_model: MISMATCH: %s\nops:\n%smodel rest (%zu bytes): \"%s\"\n",
                 why.c_str(), log_.c_str(), m_.rest.size(), printable(m_.rest, 200).c_str());
    std::abort();
  }

  static std::string describe(const observed& o) {
    switch (o.kind) {
      case observed::value:
        return "value \"" + printable(o.data) + "\" (" + std::to_string(o.data.size()) + " bytes)";
      case observed::closed:
        return "stream_closed_error{" + o.code.message() + "}: " + o.what;
      case observed::timeout:
        return "timeout (still pending)";
      case observed::logic:
        return "logic_error: " + o.what;
      case observed::other:
        return "other error: " + o.what;
    }
    return "?";
  }

  prediction predict(const read_spec& r) {
    sync_idle_eof();
    switch (r.kind) {
      case read_spec::until:
        return m_.until(r.delimiter, r.max_bytes);
      case read_spec::regex:
        return m_.regex(*r.pattern, r.max_bytes);
      case read_spec::bytes:
        return m_.bytes(r.n, r.partial);
      case read_spec::until_close:
        return m_.until_close();
    }
    return {};
  }

  std::size_t pick_max_bytes(std::optional<std::size_t> end) {
    std::uint8_t b = in_.byte();
    std::size_t e = end ? *end : m_.rest.size();
    switch (b & 7) {
      case 3:
        return e > 1 ? e - 1 : 1;
      case 4:
        return std::max<std::size_t>(e, 1);
      case 5:
        return e + 1;
      case 6:
        return 1 + (b >> 3);
      case 7:
        return 1 + (b >> 3) * 512;
      default:
        return 0;
    }
  }

  /// Checks a decided read against the model's prediction and advances the model.
  void check(const read_spec& r, const prediction& p, const observed& o) {
    if (reader_.reading()) fail("reading() is still true after the read finished (S41)");
    switch (p.kind) {
      case prediction::value:
      case prediction::prefix: {
        if (o.kind != observed::value) {
          fail("expected a value (" + std::to_string(p.length) + " bytes), got " + describe(o));
        }
        std::size_t n = o.data.size();
        if (p.kind == prediction::value ? n != p.length : (n < 1 || n > p.length)) {
          fail("wrong length " + std::to_string(n) + " (expected " +
               (p.kind == prediction::prefix ? "1.." : "") + std::to_string(p.length) +
               "): " + describe(o));
        }
        if (std::string_view(m_.rest).substr(0, n) != o.data) {
          fail("bytes differ from the stream's next " + std::to_string(n) + " bytes \"" +
               printable(std::string_view(m_.rest).substr(0, n)) + "\": " + describe(o));
        }
        m_.rest.erase(0, n);
        if (r.kind == read_spec::until_close) {  // S26: it ends with the stream closed
          if (!reader_.closed()) fail("read_until_close completed on an open stream");
          if (!m_.closed) {
            m_.closed = true;
            close_error_ = {};
          }
          if (reader_.error() != close_error_) fail("error() after read_until_close (S26)");
        }
        return;
      }
      case prediction::closed: {
        // S10: a closed stream fails with its error; an open one reads EOF (error none).
        std::error_code want = m_.closed ? close_error_ : std::error_code();
        if (o.kind != observed::closed || o.code != want) {
          fail("expected stream_closed_error{" + want.message() + "} (S10), got " + describe(o));
        }
        if (!m_.closed) {
          m_.closed = true;
          close_error_ = {};
        }
        if (!reader_.closed() || reader_.error() != close_error_) {
          fail("after a closed read: closed() must be true and error() " + close_error_.message() +
               " (S35)");
        }
        return;
      }
      case prediction::unsatisfiable: {
        auto unsat = make_error_code(errc::unsatisfiable_read);
        if (o.kind != observed::closed || o.code != unsat) {
          fail("expected stream_closed_error{unsatisfiable_read} (S16), got " + describe(o));
        }
        if (o.what.find("max_bytes=" + std::to_string(r.max_bytes)) == std::string::npos) {
          fail("S16: the message does not name max_bytes=" + std::to_string(r.max_bytes) + ": " +
               o.what);
        }
        if (!reader_.closed() || reader_.error() != unsat) {
          fail("S16: the stream must be closed with error() unsatisfiable_read");
        }
        // S16: the whole buffer is kept; how much had arrived depends on the chunking, but it
        // shows the limit was exceeded and is a prefix of what the peer sent.
        std::size_t kept = reader_.buffered_bytes();
        if (kept <= r.max_bytes || kept > m_.rest.size()) {
          fail("S16: kept buffer of " + std::to_string(kept) + " bytes, max_bytes=" +
               std::to_string(r.max_bytes) + ", unread " + std::to_string(m_.rest.size()));
        }
        m_.rest.resize(kept);
        m_.closed = true;
        close_error_ = unsat;
        return;
      }
      case prediction::hang:
        if (o.kind != observed::timeout)
          fail("expected the read to stay pending, got " + describe(o));
        return;
    }
  }

  /// S40: with no read pending the stream may still watch the transport and read the EOF
  /// (corio may watch or not without a close callback). Allowed only once the peer closed and
  /// everything it sent is buffered; from then on the model is closed as after a read's EOF.
  void sync_idle_eof() {
    if (m_.closed || !reader_.closed()) return;
    if (!m_.peer_closes || reader_.error() != std::error_code() ||
        reader_.buffered_bytes() != m_.rest.size()) {
      fail("the stream closed by itself (error() " + reader_.error().message() + ", " +
           std::to_string(reader_.buffered_bytes()) + " bytes buffered)" +
           (m_.peer_closes ? "" : " although the peer is open"));
    }
    log_ += "    (EOF read while idle)\n";
    m_.closed = true;
    close_error_ = {};
  }

  /// After every op: the buffer of a closed stream is exactly the model's rest, and an open
  /// one holds a prefix of it.
  void check_buffer() {
    sync_idle_eof();
    std::size_t b = reader_.buffered_bytes();
    if (m_.closed ? b != m_.rest.size() : b > m_.rest.size()) {
      fail("buffered_bytes() = " + std::to_string(b) + " but the model has " +
           std::to_string(m_.rest.size()) + " unread bytes (" + (m_.closed ? "closed" : "open") +
           ")");
    }
    if (m_.closed != reader_.closed()) fail("closed() disagrees with the model");
  }

  /// Awaits the pending read if the model now says it is decided.
  task<void> settle_pending() {
    if (!pending_) co_return;
    prediction p = predict(pending_spec_);
    if (p.kind == prediction::hang) {
      if (!pending_spec_.into && pending_->is_ready()) {
        fail("a read the model says must wait has completed");
      }
      co_return;
    }
    log_ += "    (pending read decided)\n";
    task<std::string> t = std::move(*pending_);
    pending_.reset();
    observed o = co_await observe(std::move(t), safety_limit);
    pending_span_.reset();
    check(pending_spec_, p, o);
  }

  template <class Start>
  task<void> issue_read(const read_spec& r, const std::string& text, Start start_read) {
    if (pending_) {  // S8: rejected, the pending read unaffected
      log_ += "  " + text + " [second read]\n";
      bool rejected = false;
      try {
        task<std::string> second = start_read();
        (void)co_await std::move(second);
      } catch (const std::logic_error&) {
        rejected = true;
      } catch (const std::exception&) {
      }
      if (!rejected) fail("S8: a second read while one is pending must fail with logic_error");
      if (!reader_.reading()) fail("S8: the pending read was disturbed");
      co_return;
    }
    prediction p = predict(r);
    log_ += "  " + text + "\n";
    task<std::string> t = start_read();
    if (p.kind == prediction::hang) {
      if (!r.into && t.is_ready()) fail("a read the model says must wait completed at once");
      if (!reader_.reading()) fail("S41: reading() false while a read is pending");
      pending_.emplace(std::move(t));
      pending_spec_ = r;
      co_return;
    }
    observed o = co_await observe(std::move(t), safety_limit);
    pending_span_.reset();
    check(r, p, o);
  }

  task<void> peer_chunk(std::uint8_t flags) {
    std::uint8_t l = in_.byte();
    std::string data;
    if (l < 128) {
      std::size_t size = 1 + (l & 15);
      for (std::size_t i = 0; i < size; ++i) data += alphabet[in_.byte() & 7];
    } else {
      std::size_t size = l < 224 ? 17 + std::size_t{in_.byte()} * 4 : 1 + in_.u16();
      static constexpr unsigned densities[] = {128, 40, 8, 0};
      data = generated(size, in_.byte(), densities[flags & 3]);
    }
    // Tiny read chunks mean one receive per few bytes: keep their data small too.
    const std::size_t cap = std::min(max_total_bytes, reader_.options().read_chunk_size * 1024);
    if (m_.peer_closes || m_.closed || total_ + data.size() > cap) {
      log_ += "  (peer chunk of " + std::to_string(data.size()) + " skipped)\n";
      co_return;
    }
    log_ += "  peer write \"" + printable(data, 40) + "\" (" + std::to_string(data.size()) + ")\n";
    total_ += data.size();
    m_.rest += data;
    // Not awaited: queued in order (S28) and sent as the reader drains.
    try {
      (void)peer_.write(std::move(data));
    } catch (const corio::error& e) {
      fail(std::string("the peer's write failed: ") + e.what());
    }
    co_await settle_pending();
  }

  task<void> reader_write() {
    std::uint8_t b = in_.byte();
    std::size_t size = b < 200 ? 1 + b : 1 + in_.u16();
    // The peer reads with the same (maybe tiny) read_chunk_size: keep it to ~1024 receives.
    size = std::min(size, reader_.options().read_chunk_size * 1024);
    if (pipe_ || m_.peer_closes) {
      log_ += "  (write skipped)\n";
      co_return;
    }
    std::string data = generated(size, b, 40);
    log_ += "  write(" + std::to_string(size) + ")\n";
    if (m_.closed) {  // S32
      std::error_code code = make_error_code(errc::timed_out);
      try {
        co_await reader_.write(data);
      } catch (const stream_closed_error& e) {
        code = e.code();
      }
      if (code != close_error_) fail("S32: a write on a closed stream must fail with error()");
      co_return;
    }
    task<void> sent = reader_.write(data);
    task<std::string> got = peer_.read_bytes(size);
    try {
      co_await with_timeout(safety_limit, std::move(sent));
    } catch (const std::exception& e) {
      fail(std::string("write failed: ") + e.what());
    }
    observed o = co_await observe(std::move(got), safety_limit);
    if (o.kind != observed::value || o.data != data) {
      fail("the peer did not receive the written bytes: " + describe(o));
    }
  }

  task<void> withdraw(std::uint8_t flags) {
    if (!pending_) co_return;
    task<std::string> t = std::move(*pending_);
    pending_.reset();
    if (flags & 1) {
      log_ += "  withdraw (with_timeout)\n";
      observed o = co_await observe(std::move(t), 0ns);
      check(pending_spec_, {prediction::hang}, o);
    } else {
      log_ += "  withdraw (destroy the task)\n";
      t = task<std::string>();
    }
    pending_span_.reset();
    if (reader_.reading()) fail("S13: reading() still true after a withdrawn read");
    if (reader_.closed()) fail("S13: a withdrawn read closed the stream");
  }

  task<void> local_close() {
    sync_idle_eof();
    if (m_.closed) {
      log_ += "  close() [again]\n";
      reader_.close();  // S36: idempotent, error() unchanged
      if (reader_.error() != close_error_) fail("S36: a second close() changed error()");
      co_return;
    }
    std::size_t kept = reader_.buffered_bytes();
    log_ += "  close() [" + std::to_string(kept) + " buffered]\n";
    if (kept > m_.rest.size()) fail("more buffered than the peer sent");
    reader_.close();
    m_.rest.resize(kept);  // S39: the buffer survives closing
    m_.closed = true;
    close_error_ = {};
    co_await settle_pending();  // S37
  }

  task<void> peer_close() {
    if (m_.peer_closes) co_return;
    log_ += "  peer close\n";
    m_.peer_closes = true;
    closer_.emplace(start(close_peer(peer_)));
    co_await settle_pending();
  }

  task<void> step() {
    sync_idle_eof();
    std::uint8_t op = in_.byte();
    std::uint8_t flags = op >> 4;
    switch (op & 15) {
      case 0:
      case 1:
      case 14:
      case 15:
        co_await peer_chunk(flags);
        break;
      case 2: {
        int turns = 1 + (flags & 3);
        log_ += "  pause " + std::to_string(turns) + " turns\n";
        for (int i = 0; i < turns; ++i) co_await sleep_for(0ns);
        co_await settle_pending();
        break;
      }
      case 3:
      case 12: {
        read_spec r;
        r.kind = read_spec::until;
        r.delimiter = delimiters[in_.byte() % std::size(delimiters)];
        std::size_t pos = m_.rest.find(r.delimiter);
        std::optional<std::size_t> end;
        if (pos != std::string::npos) end = pos + r.delimiter.size();
        r.max_bytes = pick_max_bytes(end);
        std::string text =
            "read_until(\"" + printable(r.delimiter) + "\", " + std::to_string(r.max_bytes) + ")";
        co_await issue_read(r, text, [&] { return reader_.read_until(r.delimiter, r.max_bytes); });
        break;
      }
      case 4: {
        read_spec r;
        r.kind = read_spec::regex;
        r.pattern = &patterns[in_.byte() % std::size(patterns)];
        r.max_bytes = pick_max_bytes(r.pattern->match_end(m_.rest));
        std::string text = "read_until_regex(\"" + printable(r.pattern->pattern) + "\", " +
                           std::to_string(r.max_bytes) + ")";
        co_await issue_read(
            r, text, [&] { return reader_.read_until_regex(r.pattern->pattern, r.max_bytes); });
        break;
      }
      case 5:
      case 6:
      case 13: {
        read_spec r;
        r.kind = read_spec::bytes;
        std::uint8_t b = in_.byte();
        switch (b & 7) {
          case 0:
            r.n = 0;
            break;
          case 1:
            r.n = 1;
            break;
          case 2:
            r.n = m_.rest.size();
            break;
          case 3:
            r.n = m_.rest.size() + 1;
            break;
          case 4:
            r.n = 1 + (b >> 3);
            break;
          case 5:
            r.n = m_.rest.size() + 1 + (b >> 3) * 100;
            break;
          case 6:
            r.n = in_.u16();
            break;
          default:
            r.n = 1 + (b >> 3) * 4096;
            break;
        }
        r.partial = flags & 1;
        r.into = (op & 15) == 6;
        std::string text = std::string(r.into ? "read_into(" : "read_bytes(") +
                           std::to_string(r.n) + (r.partial ? ", partial)" : ")");
        if (r.into) {
          co_await issue_read(r, text, [&] {
            auto span = std::make_shared<std::vector<std::byte>>(r.n + 8, std::byte{0xEE});
            if (!pending_) pending_span_ = span;
            return into_string(
                reader_.read_into(std::span<std::byte>(span->data(), r.n), r.partial), span, r.n);
          });
        } else {
          co_await issue_read(r, text, [&] { return reader_.read_bytes(r.n, r.partial); });
        }
        break;
      }
      case 7: {
        read_spec r;
        r.kind = read_spec::until_close;
        co_await issue_read(r, "read_until_close()", [&] { return reader_.read_until_close(); });
        break;
      }
      case 8:
        co_await reader_write();
        break;
      case 9:
        co_await withdraw(flags);
        break;
      case 10:
        co_await local_close();
        break;
      default:
        co_await peer_close();
        break;
    }
    check_buffer();
  }

  /// Everything not read yet comes out of read_until_close, in order (S12, S26, S27).
  task<void> finish() {
    if (pending_) {
      log_ += "  (final) withdraw (destroy the task)\n";
      pending_.reset();
      pending_span_.reset();
    }
    if (!m_.closed && !m_.peer_closes) co_await peer_close();
    log_ += "  (final) read_until_close()\n";
    read_spec r;
    r.kind = read_spec::until_close;
    prediction p = predict(r);
    observed o = co_await observe(reader_.read_until_close(), safety_limit);
    check(r, p, o);
    if (!m_.rest.empty()) fail("bytes left after read_until_close");
    o = co_await observe(reader_.read_until_close(), safety_limit);  // S27: again, empty
    if (o.kind != observed::value || !o.data.empty()) {
      fail("S27: a repeated read_until_close must complete with \"\": " + describe(o));
    }
    if (std::getenv("STREAM_MODEL_TRACE") != nullptr) std::fprintf(stderr, "%s", log_.c_str());
    reader_.close();
    if (closer_) {
      try {
        co_await with_timeout(safety_limit, std::move(*closer_));
      } catch (const std::exception& e) {
        fail(std::string("the peer's close did not finish: ") + e.what());
      }
    }
    peer_.close();
  }

  input_reader& in_;
  bool pipe_;
  stream reader_;
  stream peer_;
  model m_;
  std::error_code close_error_;  // the reader's error() once m_.closed
  std::size_t total_ = 0;
  std::optional<task<std::string>> pending_;
  read_spec pending_spec_;
  std::shared_ptr<std::vector<std::byte>> pending_span_;
  std::optional<task<void>> closer_;
  std::string log_;
};

loop_options options_for(bool epoll) {
  loop_options o;
  o.backend = epoll ? backend::epoll : backend::io_uring;
  return o;
}

/// A loop of the chosen backend (epoll if io_uring cannot be used here).
std::unique_ptr<event_loop> make_loop(loop_options o) {
  try {
    return std::make_unique<event_loop>(o);
  } catch (const backend_unavailable_error& e) {
    static bool told = false;
    if (!std::exchange(told, true)) {
      std::fprintf(stderr, "stream_model: io_uring unavailable (%s); using epoll\n", e.what());
    }
    o.backend = backend::epoll;
    return std::make_unique<event_loop>(o);
  }
}

/// The loop of a backend, made once and reused by every input.
event_loop& shared_loop(bool epoll) {
  static std::unique_ptr<event_loop> loops[2];
  auto& l = loops[epoll ? 1 : 0];
  if (!l) l = make_loop(options_for(epoll));
  return *l;
}

void run_input(event_loop& loop, input_reader& in, bool pipe, const stream_options& options) {
  try {
    runner r(in, pipe);
    loop.run(r.run(options));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stream_model: unexpected exception: %s\n", e.what());
    std::abort();
  }
}

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n;
}

}  // namespace

// Pools outlive an input: no per-input leak scan (support/fuzz_leak_check.hpp).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  corio::testing::disable_per_input_leak_check(argc, argv);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static constexpr std::size_t chunk_sizes[8] = {0, 1, 2, 3, 7, 16, 100, 4096};
  input_reader in{data, size};
  std::uint8_t config = in.byte();
  stream_options options;
  options.read_chunk_size = chunk_sizes[(config >> 2) & 7];
  const bool epoll = config & 1, pipe = config & 2;
  event_loop& loop = shared_loop(epoll);
  if (config & 0x20) {
    // Under lib/backend/fault_backend.hpp: reads and writes cut short (down to 1 byte),
    // EAGAIN/EINTR retried, late completions, cancels forwarded late (a withdrawn read's
    // receive completes after the cancel), 2 provided buffers on io_uring (real ENOBUFS); no
    // hard errors, so the model must agree exactly. The schedule comes from the input (a
    // fresh loop per input: its generator is seeded when the loop is made).
    auto plan = std::make_shared<detail::fault_plan>();
    plan->multishot = (config & 0x40) != 0;  // io_uring keeps its multishot receives, unfaulted
    plan->seed = in.byte();
    plan->seed |= std::uint64_t{in.byte()} << 8;
    loop_options o = options_for(epoll);
    o.queue_depth = 64;
    o.recv_buffer_count = 2;
    detail::scoped_fault_plan install(plan);
    auto faulty = make_loop(o);
    run_input(*faulty, in, pipe, options);
    if (plan->counts.errors != 0) {
      std::fprintf(stderr, "stream_model: the fault plan injected hard errors\n");
      std::abort();
    }
    return 0;
  }
  run_input(loop, in, pipe, options);
  // No state leaks between inputs: every fd of the input is closed once its kernel ops ended.
  static int baseline = -1;
  static std::uint64_t runs = 0;
  if (++runs % 1024 == 0) {
    loop.run(sleep_for(0ns));
    int now = open_fds();
    if (baseline < 0) baseline = now;
    if (now > baseline + 8) {
      std::fprintf(stderr, "stream_model: fds leak: %d open, %d after the first runs\n", now,
                   baseline);
      std::abort();
    }
  }
  return 0;
}
