#!/usr/bin/env python3
"""Writes the seed corpus of the stream_model fuzz target (test/fuzz/corpus/stream_model/).

Each seed is one small scenario in the target's input format (see test/fuzz/stream_model.cpp):
byte 0 = backend (bit 0: epoll) | transport (bit 1: pipe) | read_chunk_size index << 2
| faults (bit 5, then 2 bytes of fault seed), then opcode bytes (low 4 bits: op, high 4 bits: flags) with their arguments.
Run: python3 test/fuzz/stream_model_seeds.py [OUTDIR]
"""
import os
import sys

# Config byte.
URING, EPOLL = 0, 1
SOCKETPAIR, PIPE = 0, 2
CHUNK = {65536: 0, 1: 1, 2: 2, 3: 3, 7: 4, 16: 5, 100: 6, 4096: 7}

# Ops (low 4 bits of the opcode byte).
PEER, PAUSE, UNTIL, REGEX, BYTES, INTO, UNTIL_CLOSE = 0, 2, 3, 4, 5, 6, 7
WRITE, WITHDRAW, CLOSE, PEER_CLOSE = 8, 9, 10, 11

ALPHABET = {"a": 0, "b": 1, "x": 2, "\n": 3, "\r": 4, "\0": 5}
DELIMS = ["\n", "\0", "x", "a", "\r\n", "\r\n\r\n", "ab", "\0x", "xx", "", "ax", "\n\n", "bab"]
PATTERNS = ["\\r?\\n", "a+x", "^[ab]*x", "\\r?\\n\\r?\\n", ""]


def config(backend, transport, chunk, fault_seed=None):
    """fault_seed: run under the fault-injecting backend with this 16-bit schedule seed."""
    if fault_seed is None:
        return bytes([backend | transport | (CHUNK[chunk] << 2)])
    return bytes([backend | transport | (CHUNK[chunk] << 2) | 0x20,
                  fault_seed & 0xFF, fault_seed >> 8])


def peer(text):
    """A literal peer chunk of 1..16 bytes over the alphabet."""
    assert 1 <= len(text) <= 16
    return bytes([PEER, len(text) - 1]) + bytes(ALPHABET[c] for c in text)


def peer_generated(size, seed, density=0):
    """A generated chunk of 1..65536 bytes (density 0..3: many delimiters .. none)."""
    return bytes([PEER | density << 4, 0xE0, (size - 1) & 0xFF, (size - 1) >> 8, seed])


def max_bytes(limit):
    """max_bytes = limit (1..32), or 0 (no limit) for None."""
    return bytes([0]) if limit is None else bytes([6 | (limit - 1) << 3])


def until(delim, limit=None):
    return bytes([UNTIL, DELIMS.index(delim)]) + max_bytes(limit)


def regex(pattern, limit=None):
    return bytes([REGEX, PATTERNS.index(pattern)]) + max_bytes(limit)


def read_bytes(n, partial=False, into=False):
    """n = 1..32 bytes."""
    return bytes([(INTO if into else BYTES) | int(partial) << 4, 4 | (n - 1) << 3])


def op(code, flags=0):
    return bytes([code | flags << 4])


SEEDS = {
    "lines": config(URING, SOCKETPAIR, 65536) + peer("ab\r\nx\nbb") + until("\n") +
    until("\r\n") + until("\n") + op(PEER_CLOSE) + op(UNTIL_CLOSE),
    "straddle_1byte_epoll": config(EPOLL, SOCKETPAIR, 1) + peer("a\r") + op(PAUSE) +
    peer("\n\r") + until("\r\n\r\n") + peer("\nab") + regex("a+x") + peer("ax") +
    until("\r\n\r\n"),
    "pending_withdrawn": config(URING, SOCKETPAIR, 3) + until("\n") + peer("abab") +
    op(WITHDRAW, 1) + until("\n") + peer("b\n") + op(PAUSE) + until("bab") + op(WITHDRAW) +
    read_bytes(6),
    "max_bytes": config(EPOLL, SOCKETPAIR, 7) + peer("aaaaaaaa") + until("\n", 4) +
    read_bytes(3) + op(UNTIL_CLOSE),
    "pipe_into_partial": config(EPOLL, PIPE, 16) + read_bytes(10, True, True) + peer("ab\0x") +
    op(PAUSE) + until("\0x") + peer("xxxxx") + read_bytes(8, into=True) + op(PEER_CLOSE),
    "write_close": config(URING, SOCKETPAIR, 100) + peer("ab\n") + op(WRITE) + bytes([9]) +
    until("\n") + peer("xx") + op(CLOSE) + read_bytes(1) + op(WRITE) + bytes([3]) +
    read_bytes(5),
    "large_chunks": config(URING, PIPE, 4096) + peer_generated(60000, 7, 2) +
    regex("\\r?\\n\\r?\\n", 32) + peer_generated(5000, 9, 0) + until("", None) +
    read_bytes(32, True) + op(PEER_CLOSE) + until("xx"),
    "second_read": config(EPOLL, SOCKETPAIR, 2) + op(UNTIL_CLOSE) + until("\n") + peer("ab\n") +
    read_bytes(1) + op(CLOSE) + op(UNTIL_CLOSE),
    "faults_uring_withdrawn": config(URING, SOCKETPAIR, 65536, 1234) + until("\r\n") +
    peer("ab\r") + op(PAUSE, 3) + op(WITHDRAW, 1) + peer("\nxx") + until("\r\n") +
    peer_generated(3000, 5, 1) + read_bytes(32, True, True) + op(WITHDRAW) + op(PEER_CLOSE) +
    regex("\\r?\\n\\r?\\n"),
    "faults_epoll_pipe": config(EPOLL, PIPE, 7, 99) + peer_generated(6000, 3, 0) +
    until("\n") + op(WITHDRAW, 1) + peer("a\n") + read_bytes(20) + until("\n", 8) +
    op(UNTIL_CLOSE),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "stream_model")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
