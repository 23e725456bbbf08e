/* epoll_echo: a minimal hand-written edge-triggered epoll echo server, the epoll ceiling
 * for corio_echo.
 *
 *   peer_epoll_echo --port N [--mode raw|line]
 *
 * One thread, non-blocking sockets registered once with EPOLLIN|EPOLLOUT|EPOLLET. On input:
 * recv into a 64 KiB buffer, answer with one send (raw: the bytes; line: every complete line
 * of that read, together), queue what the kernel did not take and finish it on EPOLLOUT.
 * A recv that returns less than the buffer drained the socket, so the read loop stops there
 * without the extra recv that would only say EAGAIN (edge-triggered epoll reports new data
 * with a new event). Prints "listening on 127.0.0.1:N" when ready. Exits on SIGINT/SIGTERM. */
#define _GNU_SOURCE /* memmem, accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE (64 * 1024)

struct bytes {
  char *data;
  size_t len, cap;
};

struct conn {
  int fd;
  struct bytes input;   /* line mode: bytes of an unfinished line */
  struct bytes backlog; /* replies the kernel did not accept yet */
};

static int line_mode;
static char read_buffer[READ_SIZE];

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

static void close_conn(struct conn *c) {
  close(c->fd); /* also removes it from the epoll set */
  free(c->input.data);
  free(c->backlog.data);
  free(c);
}

/* Sends the backlog; returns -1 if the connection failed. */
static int send_backlog(struct conn *c) {
  size_t off = 0;
  while (off < c->backlog.len) {
    ssize_t n = send(c->fd, c->backlog.data + off, c->backlog.len - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      return -1;
    }
    off += (size_t)n;
  }
  memmove(c->backlog.data, c->backlog.data + off, c->backlog.len - off);
  c->backlog.len -= off;
  return 0;
}

/* Sends `reply`, or queues it behind an unsent backlog. Returns -1 if the connection failed. */
static int reply(struct conn *c, const char *data, size_t n) {
  if (n == 0) return 0;
  if (c->backlog.len > 0) {
    append(&c->backlog, data, n);
    return 0;
  }
  size_t off = 0;
  while (off < n) {
    ssize_t sent = send(c->fd, data + off, n - off, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      return -1;
    }
    off += (size_t)sent;
  }
  if (off < n) append(&c->backlog, data + off, n - off);
  return 0;
}

/* Returns -1 if the connection is finished. */
static int on_readable(struct conn *c) {
  for (;;) {
    ssize_t n = recv(c->fd, read_buffer, READ_SIZE, 0);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EAGAIN) return 0;
      if (errno == EINTR) continue;
      return -1;
    }
    if (!line_mode) {
      if (reply(c, read_buffer, (size_t)n) < 0) return -1;
    } else if (c->input.len == 0) {
      /* Common case: no partial line pending; answer straight from the read buffer. */
      size_t end = 0, scan = 0;
      char *hit;
      while ((hit = memmem(read_buffer + scan, (size_t)n - scan, "\r\n", 2)) != NULL) {
        scan = (size_t)(hit - read_buffer) + 2;
        end = scan;
      }
      if (reply(c, read_buffer, end) < 0) return -1;
      append(&c->input, read_buffer + end, (size_t)n - end);
    } else {
      size_t scan = c->input.len - 1; /* a "\r" may end the old part */
      append(&c->input, read_buffer, (size_t)n);
      size_t end = 0;
      char *hit;
      while ((hit = memmem(c->input.data + scan, c->input.len - scan, "\r\n", 2)) != NULL) {
        scan = (size_t)(hit - c->input.data) + 2;
        end = scan;
      }
      if (reply(c, c->input.data, end) < 0) return -1;
      memmove(c->input.data, c->input.data + end, c->input.len - end);
      c->input.len -= end;
    }
    if (n < READ_SIZE) return 0; /* drained: the next arrival raises a new edge */
  }
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      line_mode = !strcmp(argv[++i], "line");
    } else {
      fprintf(stderr, "usage: %s --port N [--mode raw|line]\n", argv[0]);
      return 2;
    }
  }
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {0};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.ptr = NULL; /* NULL: the listener */
  if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) != 0) die("epoll_ctl");

  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  struct epoll_event events[512];
  for (;;) {
    int n = epoll_wait(ep, events, 512, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) {
        for (;;) {
          int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break; /* EAGAIN (or a transient error): wait for the next edge */
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *nc = calloc(1, sizeof *nc);
          if (!nc) die("calloc");
          nc->fd = fd;
          struct epoll_event cev = {0};
          cev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
          cev.data.ptr = nc;
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) die("epoll_ctl");
        }
        continue;
      }
      uint32_t e = events[i].events;
      int failed = 0;
      if ((e & EPOLLOUT) && c->backlog.len > 0) failed = send_backlog(c) < 0;
      if (!failed && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        failed = on_readable(c) < 0;
      }
      if (failed) close_conn(c);
    }
  }
}
