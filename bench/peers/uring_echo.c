/* uring_echo: a minimal hand-written liburing echo server, the io_uring ceiling for corio_echo.
 *
 *   peer_uring_echo --port N [--mode raw|line] [--single-shot]
 *
 * One thread, one ring (SINGLE_ISSUER|DEFER_TASKRUN when the kernel has them), multishot
 * accept, multishot recv into a provided buffer ring, one send in flight per connection, and
 * one io_uring_submit_and_wait per loop turn. Received bytes are copied out of the provided
 * buffer into the connection's output buffer (raw) or input buffer (line) and the buffer is
 * recycled at once. Line mode answers all the complete lines of one receive with one send.
 * Prints "listening on 127.0.0.1:N" when ready. Exits on SIGINT/SIGTERM (default action). */
#define _GNU_SOURCE /* memmem, accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_GROUP 1
#define BUFFER_COUNT 1024 /* power of two */
#define BUFFER_SIZE (16 * 1024)

enum op_type { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

struct bytes {
  char *data;
  size_t len, cap;
};

struct conn {
  int fd;
  int recv_armed;       /* a multishot recv is in flight */
  int send_inflight;    /* a send of `sending` is in flight */
  int closing;          /* EOF or error seen: close once nothing is in flight */
  struct bytes input;   /* line mode: bytes of an unfinished line */
  struct bytes pending; /* replies not yet handed to the kernel */
  struct bytes sending; /* the reply being sent */
  size_t sent;          /* bytes of `sending` already sent */
};

static struct io_uring ring;
static struct io_uring_buf_ring *buf_ring;
static char *buffers;
static int line_mode;
static int single_shot; /* --single-shot: one recv per completion, as corio issues them */

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void append(struct bytes *b, const char *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("realloc");
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
}

static uint64_t tag(void *p, enum op_type t) { return (uint64_t)(uintptr_t)p | (uint64_t)t; }

static struct io_uring_sqe *get_sqe(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) {
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
    if (!sqe) die("io_uring_get_sqe");
  }
  return sqe;
}

static void arm_accept(int listen_fd) {
  struct io_uring_sqe *sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, 0);
  io_uring_sqe_set_data64(sqe, OP_ACCEPT);
}

static void arm_recv(struct conn *c) {
  struct io_uring_sqe *sqe = get_sqe();
  if (single_shot) {
    io_uring_prep_recv(sqe, c->fd, NULL, BUFFER_SIZE, 0);
  } else {
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
  }
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BUFFER_GROUP;
  io_uring_sqe_set_data64(sqe, tag(c, OP_RECV));
  c->recv_armed = 1;
}

static void start_send(struct conn *c) {
  struct io_uring_sqe *sqe = get_sqe();
  io_uring_prep_send(sqe, c->fd, c->sending.data + c->sent, c->sending.len - c->sent, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
  c->send_inflight = 1;
}

/* Moves the pending replies into the send slot if it is free. */
static void flush(struct conn *c) {
  if (c->send_inflight || c->pending.len == 0 || c->closing) return;
  struct bytes t = c->sending;
  c->sending = c->pending;
  c->pending = t;
  c->pending.len = 0;
  c->sent = 0;
  start_send(c);
}

static void maybe_free(struct conn *c) {
  if (!c->closing || c->recv_armed || c->send_inflight) return;
  close(c->fd);
  free(c->input.data);
  free(c->pending.data);
  free(c->sending.data);
  free(c);
}

static void recycle(unsigned short id) {
  io_uring_buf_ring_add(buf_ring, buffers + (size_t)id * BUFFER_SIZE, BUFFER_SIZE, id,
                        io_uring_buf_ring_mask(BUFFER_COUNT), 0);
  io_uring_buf_ring_advance(buf_ring, 1);
}

static void on_data(struct conn *c, const char *data, size_t n) {
  if (!line_mode) {
    append(&c->pending, data, n);
    return;
  }
  /* Line mode: find every complete line; their replies (the lines themselves) go out together. */
  append(&c->input, data, n);
  size_t scan = c->input.len >= n + 1 ? c->input.len - n - 1 : 0; /* "\r" may end the old part */
  size_t end = 0;
  for (;;) {
    char *hit = memmem(c->input.data + scan, c->input.len - scan, "\r\n", 2);
    if (!hit) break;
    scan = (size_t)(hit - c->input.data) + 2;
    end = scan;
  }
  if (end) {
    append(&c->pending, c->input.data, end);
    memmove(c->input.data, c->input.data + end, c->input.len - end);
    c->input.len -= end;
  }
}

static void handle(struct io_uring_cqe *cqe, int listen_fd) {
  uint64_t data = cqe->user_data;
  enum op_type type = (enum op_type)(data & 7);
  struct conn *c = (struct conn *)(uintptr_t)(data & ~(uint64_t)7);
  int res = cqe->res;
  switch (type) {
    case OP_ACCEPT:
      if (res >= 0) {
        int one = 1;
        setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *nc = calloc(1, sizeof *nc);
        if (!nc) die("calloc");
        nc->fd = res;
        arm_recv(nc);
      }
      if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(listen_fd);
      break;
    case OP_RECV:
      if (res > 0) {
        unsigned short id = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        on_data(c, buffers + (size_t)id * BUFFER_SIZE, (size_t)res);
        recycle(id);
        flush(c);
      } else if (cqe->flags & IORING_CQE_F_BUFFER) {
        recycle((unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
      }
      if (!(cqe->flags & IORING_CQE_F_MORE)) {
        c->recv_armed = 0;
        if (res == 0 || (res < 0 && res != -ENOBUFS)) {
          c->closing = 1;
          maybe_free(c);
        } else {
          arm_recv(c); /* ran out of provided buffers, or the kernel ended the multishot */
        }
      }
      break;
    case OP_SEND:
      c->send_inflight = 0;
      if (res < 0) {
        c->closing = 1;
      } else if (!c->closing) {
        c->sent += (size_t)res;
        if (c->sent < c->sending.len) {
          start_send(c); /* short send: the rest */
        } else {
          c->sending.len = 0;
          flush(c);
        }
      }
      maybe_free(c);
      break;
  }
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      line_mode = !strcmp(argv[++i], "line");
    } else if (!strcmp(argv[i], "--single-shot")) {
      single_shot = 1;
    } else {
      fprintf(stderr, "usage: %s --port N [--mode raw|line] [--single-shot]\n", argv[0]);
      return 2;
    }
  }
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) die("socket");
  int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind");
  if (listen(listen_fd, 4096) != 0) die("listen");
  socklen_t addr_len = sizeof addr;
  getsockname(listen_fd, (struct sockaddr *)&addr, &addr_len);

  struct io_uring_params params = {0};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int rc = io_uring_queue_init_params(4096, &ring, &params);
  if (rc == -EINVAL) {
    memset(&params, 0, sizeof params);
    rc = io_uring_queue_init_params(4096, &ring, &params);
  }
  if (rc < 0) {
    errno = -rc;
    die("io_uring_queue_init_params");
  }

  /* Provided buffer ring for the multishot receives. */
  size_t ring_bytes = BUFFER_COUNT * sizeof(struct io_uring_buf);
  buf_ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (buf_ring == MAP_FAILED) die("mmap");
  struct io_uring_buf_reg reg = {0};
  reg.ring_addr = (uint64_t)(uintptr_t)buf_ring;
  reg.ring_entries = BUFFER_COUNT;
  reg.bgid = BUFFER_GROUP;
  rc = io_uring_register_buf_ring(&ring, &reg, 0);
  if (rc < 0) {
    errno = -rc;
    die("io_uring_register_buf_ring");
  }
  buffers = malloc((size_t)BUFFER_COUNT * BUFFER_SIZE);
  if (!buffers) die("malloc");
  io_uring_buf_ring_init(buf_ring);
  for (int i = 0; i < BUFFER_COUNT; ++i) {
    io_uring_buf_ring_add(buf_ring, buffers + (size_t)i * BUFFER_SIZE, BUFFER_SIZE,
                          (unsigned short)i, io_uring_buf_ring_mask(BUFFER_COUNT), i);
  }
  io_uring_buf_ring_advance(buf_ring, BUFFER_COUNT);

  arm_accept(listen_fd);
  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  for (;;) {
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY) {
      errno = -rc;
      die("io_uring_submit_and_wait");
    }
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      handle(cqe, listen_fd);
      ++seen;
    }
    io_uring_cq_advance(&ring, seen);
  }
}
