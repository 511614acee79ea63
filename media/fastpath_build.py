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
typedef struct {
    uint32_t clock_rate;
    uint8_t started;
    uint8_t has_prev_bucket;
    uint16_t base_seq;
    uint16_t max_seq;
    int32_t bad_seq;
    int64_t cycles;
    int64_t received;
    int64_t expected_prior;
    int64_t received_prior;
    int64_t transit;
    int64_t jitter_q4;
    int64_t bucket_bytes;
    int64_t prev_bucket_bytes;
    double bucket_start_s;
    double first_arrival_s;
} sk_rstats;

typedef struct {
    int32_t seq;
    uint32_t len;
    uint64_t pos;
    double time;
} sk_cache_slot;

typedef struct {
    sk_cache_slot *slots;
    uint32_t mask;
    uint32_t arena_size;
    uint8_t *arena;
    uint64_t head;
    double max_age_s;
} sk_cache;

typedef struct {
    sk_sink **sinks;
    int count;
    uint8_t remap;
    uint8_t twcc_id;
    uint8_t table[16];
} sk_group;

typedef struct {
    sk_rstats stats;
    sk_cache *cache;
    int64_t nack_highest;
    uint8_t has_nack;
    uint8_t pt;
    int16_t red_pt;
    uint8_t ast_id;
    uint8_t level_id;
    uint8_t paused;
    uint8_t slow;
    uint8_t red_groups;
    int32_t waiting;
    uint32_t last_ts;
    double last_arrival;
    uint64_t red_received;
    uint64_t fast_packets;
    uint32_t level_bins[16];
    uint32_t level_voiced;
    int ngroups;
    sk_group *groups;
    ...;
} sk_stream;

int sk_ext_find(const uint8_t *p, int len, int id);
void sk_level_note(sk_stream *s, const uint8_t *pkt, int len);
int sk_ext_remap(uint8_t *p, int len, const uint8_t *table, int tlen);
void sk_rstats_update(sk_rstats *s, uint16_t seq, uint32_t ts, double now, int size);
void sk_rstats_roll(sk_rstats *s, double now);
void sk_cache_init(sk_cache *c, sk_cache_slot *slots, uint32_t nslots, uint8_t *arena, uint32_t arena_size,
                   double max_age_s);
void sk_cache_clear(sk_cache *c);
void sk_cache_put(sk_cache *c, uint16_t seq, const uint8_t *pkt, int len, double now);
int sk_cache_get(const sk_cache *c, uint16_t seq, double now, uint8_t *out);
int sk_stream_forward(sk_stream *s, int gi, const uint8_t *pkt, int len, uint16_t seq, uint32_t ts,
                      int keyframe, double now);
int sk_stream_receive(sk_stream *s, const uint8_t *pkt, int len, double now);

#define SK_DEMUX_MAX 32

typedef struct {
    int n;
    uint32_t ssrc[SK_DEMUX_MAX];
    sk_stream *stream[SK_DEMUX_MAX];
} sk_demux;

#define SK_ARRIVAL_RING 4096

typedef struct {
    uint8_t ext_id;
    int64_t highest;
    int64_t next;
    uint64_t received;
    int64_t seqs[SK_ARRIVAL_RING];
    int64_t times[SK_ARRIVAL_RING];
} sk_arrivals;

void sk_arrivals_init(sk_arrivals *a);
void sk_arrivals_record(sk_arrivals *a, const uint8_t *plain, int len, double now);
int sk_receive_rtp(sk_reader *r, const sk_demux *d, sk_arrivals *a, const uint8_t *packet, int len, double now);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "media._fastpath",
    (Path(__file__).resolve().parent / "fastpath.c").read_text(),
    libraries=["m"],
    extra_compile_args=["-O2", "-std=c99", "-D_GNU_SOURCE"],
)
