"""Build recipe of ``media._fastpath`` (cffi, API mode): the C fan-out in ``media/fastpath.c``.

Run by setuptools at install time (``cffi_modules`` in ``setup.py``): ``pip install -e .``
(``scripts/bootstrap.sh``) compiles it with the machine's C compiler, in place; run it again
after changing ``fastpath.c``.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

CDEF = """
typedef struct {
    uint32_t clock_rate;
    uint8_t started;
    uint8_t new_epoch;
    uint16_t highest_out_seq;
    uint16_t seq_offset;
    uint32_t ts_offset;
    uint32_t out_ts;
    ...;
} sk_rewriter;

typedef struct {
    uint32_t send_us;
    uint16_t seq;
    uint16_t size;
} sk_twcc_rec;

#define SK_TWCC_RING 4096

typedef struct {
    uint64_t sent_packets;
    uint64_t sent_bytes;
    uint64_t dropped;
    uint8_t twcc_on;
    uint16_t twcc_seq;
    sk_twcc_rec twcc_ring[SK_TWCC_RING];
    ...;
} sk_writer;

typedef struct {
    sk_rewriter rw;
    sk_writer *writer;
    uint32_t ssrc;
    uint8_t pt;
    uint8_t waiting;
    uint64_t packets;
    uint64_t octets;
    uint8_t passthrough;
} sk_sink;

#define SK_RECV_MAX 4096

typedef struct {
    uintptr_t srtp;
    uint64_t failed;
    uint8_t buf[SK_RECV_MAX];
} sk_reader;

void sk_init(uintptr_t protect_rtp, uintptr_t protect_rtcp, uintptr_t unprotect_rtp, uintptr_t unprotect_rtcp);
int sk_unprotect(sk_reader *r, const uint8_t *packet, int len, int rtcp);
void sk_rewriter_init(sk_rewriter *r, uint32_t clock_rate, uint16_t first_seq, uint32_t first_ts);
int32_t sk_rewrite(sk_rewriter *r, uint16_t seq, uint32_t ts, double now);
int32_t sk_to_source_seq(const sk_rewriter *r, uint16_t out_seq);
int sk_writer_open(sk_writer *w, uintptr_t srtp, int fd, const char *host, int port);
void sk_writer_close(sk_writer *w);
int sk_writer_send(sk_writer *w, const uint8_t *packet, int len, int rtcp);
int sk_writer_send_rtp(sk_writer *w, const uint8_t *packet, int len, int twcc_offset, double now);
int sk_fanout(sk_sink **sinks, int n, const uint8_t *packet, int len, uint16_t seq, uint32_t ts,
              int keyframe, double now, int twcc_offset);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "media._fastpath",
    (Path(__file__).resolve().parent / "fastpath.c").read_text(),
    libraries=["m"],
    extra_compile_args=["-O2", "-std=c99", "-D_GNU_SOURCE"],
)
