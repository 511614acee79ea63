/* SanKe media fast path: sequence/timestamp rewriting, SRTP protect and send, in one C loop.
 *
 * Why C: forwarding one packet to N subscribers is N times (copy, patch the header, protect,
 * sendto).  In Python each of those steps costs a few microseconds of interpreter work on top
 * of the kernel's sendto; at N = 20 the interpreter, not the kernel, set the forwarding delay.
 * Here the whole fan-out of one packet is one call (cffi releases the GIL around it), and the
 * only work per subscriber is a memcpy, ten header bytes, libsrtp and one sendto.
 *
 * Objects (each owned by a Python object that keeps it alive, see media/srtp.py,
 * media/rewrite.py and media/consumer.py):
 *   sk_rewriter  one consumer stream's seq/ts mapping (the algorithm is described in
 *                media/rewrite.py, which wraps it);
 *   sk_writer    one subscriber transport: its SRTP context, socket and remote address, and a
 *                buffer the packet is protected in;
 *   sk_sink      one consumer: a rewriter, the transport's writer, the SSRC and payload type
 *                the subscriber negotiated, and whether it waits for a keyframe; or, with
 *                ``passthrough``, one layer of a pipe to another worker (media/pipe.py): the
 *                packet as it came, under the pipe's SSRC.
 *
 * Transport-wide congestion control (media/twcc.py): when the subscriber negotiated the
 * transport-cc header extension, every RTP packet a writer sends carries the writer's next
 * transport-wide sequence number (the caller leaves a 2-byte element for it at a given offset,
 * only those 2 bytes are patched here), and the writer remembers (sequence number, send time,
 * size) in a fixed ring that the control side reads when the subscriber's feedback arrives.
 *
 * The receiving side: sk_reader unprotects an incoming SRTP/SRTCP packet into its own buffer
 * (media/srtp.py SrtpReader).  In a small lesson a worker wakes a few hundred times a second for
 * one or two packets, and then every line of Python runs with cold caches (pylibsrtp's wrapper
 * around srtp_unprotect alone cost ~55 us a packet there, against a few us in a hot loop), so the
 * common case of a publisher's packet is received whole here, in one call (sk_receive_rtp):
 *   sk_demux     a publisher transport's SSRC -> stream table (media/producer.py SsrcTable);
 *   sk_arrivals  its transport-cc arrival ring (media/transportcc.py ArrivalRecorder);
 *   sk_stream    one producer stream: its receive statistics (sk_rstats, media/rtpstats.py
 *                ReceiveStats), the NACK generator's newest number (media/nack_generator.py), its
 *                NACK cache (sk_cache, media/cache.py PacketCache) and its groups of consumers
 *                (sk_group: extension-id table, transport-cc id, sinks).
 * sk_stream_receive takes a packet only when it is the stream's in-order case and nothing needs
 * Python (media/producer.py says when); otherwise it changes nothing and Python's path runs on
 * the same state.  The header-extension parsing here (sk_ext_find, sk_ext_remap) is also what
 * media/rtp.py calls.
 *
 * libsrtp is linked into pylibsrtp's extension, whose symbols are private to it, so its
 * srtp_protect/srtp_protect_rtcp/srtp_unprotect/srtp_unprotect_rtcp are handed over once as
 * function pointers (sk_init).
 * Nothing here allocates, logs or blocks: sockets are non-blocking, and a full socket buffer
 * drops the packet, as UDP would.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SK_MAX_PACKET 1500
#define SK_LEVEL_BINS 16
#define SK_SRTP_TRAILER 148
#define SK_MAX_DROPOUT 3000
#define SK_MAX_MISORDER 100
#define SK_TWCC_RING 4096 /* power of two; ~16 s at 250 packets/s */

typedef int (*sk_protect_fn)(void *ctx, void *packet, int *len);

static sk_protect_fn sk_protect_rtp = 0;
static sk_protect_fn sk_protect_rtcp = 0;
static sk_protect_fn sk_unprotect_rtp = 0;
static sk_protect_fn sk_unprotect_rtcp = 0;

#define SK_RECV_MAX 4096 /* the largest datagram a transport reads */
#define SK_ADD_ROOM 8 /* what appending a transport-cc element may add to a packet */

typedef struct {
    uint32_t clock_rate;
    int32_t bad_seq; /* -1: none */
    uint8_t started;
    uint8_t new_epoch;
    uint16_t highest_in_seq;
    uint16_t highest_out_seq;
    uint16_t seq_offset;
    int64_t epoch_ext;
    uint32_t ts_offset;
    uint32_t first_ts;
    uint32_t ref_ts;
    uint32_t out_ts;
    double ref_s;
} sk_rewriter;

typedef struct {
    uint32_t send_us; /* low 32 bits of the send time in microseconds (the caller's clock) */
    uint16_t seq;
    uint16_t size; /* bytes on the wire; 0: slot never used */
} sk_twcc_rec;

typedef struct {
    uintptr_t srtp; /* srtp_t; 0 while not connected or closed */
    int fd;
    uint32_t addrlen;
    struct sockaddr_storage addr;
    uint64_t sent_packets;
    uint64_t sent_bytes;
    uint64_t dropped;
    uint8_t twcc_on;   /* stamp transport-wide sequence numbers */
    uint16_t twcc_seq; /* the next one */
    sk_twcc_rec twcc_ring[SK_TWCC_RING];
    uint8_t buf[SK_MAX_PACKET + SK_SRTP_TRAILER];
} sk_writer;

typedef struct {
    sk_rewriter rw;
    sk_writer *writer;
    uint32_t ssrc;
    uint8_t pt;
    uint8_t waiting;
    uint64_t packets;
    uint64_t octets;
    uint8_t passthrough; /* a pipe to another worker: sequence number, timestamp and payload type
                            go as they came (only the SSRC is the pipe's), never waits */
} sk_sink;

typedef struct {
    uintptr_t srtp; /* srtp_t; 0 while not connected or closed */
    uint64_t failed; /* packets refused: authentication, replay, too long */
    uint8_t buf[SK_RECV_MAX];
} sk_reader;

/* RFC 3550 A.1/A.3/A.8 receive statistics of one incoming stream (media/rtpstats.py ReceiveStats
 * reads and reports them; the in-order receive path and Python's path both update them here). */
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

/* A ring of recent packets by sequence number (media/cache.py PacketCache): slots index a ring of
 * bytes, so a cache costs its arena, not SK_MAX_PACKET per slot. */
typedef struct {
    int32_t seq; /* -1: empty */
    uint32_t len;
    uint64_t pos; /* where in the arena's byte stream (head counts every byte ever written) */
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

/* Consumers of one producer stream that share an extension-id table and a transport-cc id. */
typedef struct {
    sk_sink **sinks;
    int count;
    uint8_t remap; /* renumber extension ids by table */
    uint8_t twcc_id; /* the subscribers' transport-cc id, 0: none */
    uint8_t table[16];
} sk_group;

/* One SSRC of a producer (media/producer.py ProducerStream): what its in-order receive path in C
 * reads and updates.  ``slow``, ``paused``, ``waiting`` and the groups are kept by Python. */
typedef struct {
    sk_rstats stats;
    sk_cache *cache; /* 0: none */
    int64_t nack_highest; /* media/nack_generator.py: newest extended sequence number, -1 before any */
    uint8_t has_nack;
    uint8_t pt;     /* the publisher's payload type */
    int16_t red_pt; /* its RED payload type, -1: none */
    uint8_t ast_id; /* the publisher's abs-send-time id, 0: none */
    uint8_t level_id; /* the publisher's ssrc-audio-level id (RFC 6464), 0: none */
    uint8_t paused;
    uint8_t slow;   /* something only Python does is needed for every packet */
    uint8_t red_groups; /* some group takes RED */
    int32_t waiting; /* consumers waiting for a keyframe */
    uint32_t last_ts;
    double last_arrival;
    uint64_t red_received;
    uint64_t fast_packets; /* packets the in-order path took whole */
    /* media/speech.py: the audio levels of the packets since it last read them, by -dBov / 8
     * (bin 0: 0..-7 dBov, the loudest; bin 15: -120..-127, silence), and how many had the V bit */
    uint32_t level_bins[SK_LEVEL_BINS];
    uint32_t level_voiced;
    int ngroups;
    sk_group *groups; /* ngroups of them (Python owns the array) */
    uint8_t scratch[SK_MAX_PACKET + SK_ADD_ROOM];
} sk_stream;

#define SK_ARRIVAL_RING 4096 /* media/transportcc.py RING */
#define SK_ARRIVAL_MAX_PENDING 2000 /* media/transportcc.py MAX_PENDING */

/* A publisher transport's arrival times by transport-wide sequence number (media/transportcc.py
 * ArrivalRecorder: it builds the feedback from these on a timer). */
typedef struct {
    uint8_t ext_id; /* 0: transport-cc not negotiated, nothing recorded */
    int64_t highest; /* newest extended number, -1 before any */
    int64_t next;    /* first extended number not yet reported, -1 before any */
    uint64_t received;
    int64_t seqs[SK_ARRIVAL_RING];  /* extended number per slot, -1: empty */
    int64_t times[SK_ARRIVAL_RING]; /* arrival time in us */
} sk_arrivals;

#define SK_DEMUX_MAX 32

/* A publisher transport's SSRC → stream table, for the C receive path (media/producer.py
 * SsrcTable keeps it equal to the Python one; SSRCs beyond SK_DEMUX_MAX take Python's path). */
typedef struct {
    int n;
    uint32_t ssrc[SK_DEMUX_MAX];
    sk_stream *stream[SK_DEMUX_MAX];
} sk_demux;

void sk_init(uintptr_t protect_rtp, uintptr_t protect_rtcp, uintptr_t unprotect_rtp, uintptr_t unprotect_rtcp)
{
    sk_protect_rtp = (sk_protect_fn)protect_rtp;
    sk_protect_rtcp = (sk_protect_fn)protect_rtcp;
    sk_unprotect_rtp = (sk_protect_fn)unprotect_rtp;
    sk_unprotect_rtcp = (sk_protect_fn)unprotect_rtcp;
}

/* ------------------------------------------------------------------ reader */

/* Unprotect SRTP (rtcp = 0) or SRTCP (rtcp = 1) ``packet`` into r->buf: the plain length, or -1
 * (not open, empty, longer than the buffer, or refused by libsrtp: counted in r->failed). */
int sk_unprotect(sk_reader *r, const uint8_t *packet, int len, int rtcp)
{
    int n = len;
    if (!r->srtp || len <= 0 || len > SK_RECV_MAX) {
        r->failed++;
        return -1;
    }
    memcpy(r->buf, packet, (size_t)len);
    if ((rtcp ? sk_unprotect_rtcp : sk_unprotect_rtp)((void *)r->srtp, r->buf, &n) != 0 || n <= 0) {
        r->failed++;
        return -1;
    }
    return n;
}

/* ------------------------------------------------------------------ rewriter */

void sk_rewriter_init(sk_rewriter *r, uint32_t clock_rate, uint16_t first_seq, uint32_t first_ts)
{
    memset(r, 0, sizeof(*r));
    r->clock_rate = clock_rate;
    r->highest_out_seq = (uint16_t)(first_seq - 1);
    r->out_ts = first_ts;
    r->first_ts = first_ts;
    r->ref_ts = first_ts;
    r->new_epoch = 1;
    r->bad_seq = -1;
}

static inline int32_t seq_delta(uint16_t a, uint16_t b)
{
    return (int32_t)(((uint32_t)(uint16_t)(a - b) + 0x8000u) & 0xFFFFu) - 0x8000;
}

static inline int64_t ts_delta(uint32_t a, uint32_t b)
{
    return (int64_t)((((uint64_t)(uint32_t)(a - b)) + 0x80000000ull) & 0xFFFFFFFFull) - 0x80000000ll;
}

int32_t sk_rewrite(sk_rewriter *r, uint16_t seq, uint32_t ts, double now)
{
    if (!r->new_epoch) {
        int32_t d = seq_delta(seq, r->highest_in_seq);
        if (d > SK_MAX_DROPOUT || d < -SK_MAX_MISORDER) {
            if ((int32_t)seq != r->bad_seq) {
                r->bad_seq = (uint16_t)(seq + 1);
                return -1;
            }
            r->new_epoch = 1; /* two consecutive packets: the source restarted */
        } else {
            int64_t ext = r->epoch_ext + d;
            uint16_t out_seq;
            uint32_t out_ts;
            if (ext < 0)
                return -1; /* before the epoch's first packet */
            r->bad_seq = -1;
            out_seq = (uint16_t)(seq + r->seq_offset);
            out_ts = ts + r->ts_offset;
            if (d > 0) {
                r->highest_in_seq = seq;
                r->epoch_ext = ext;
                r->highest_out_seq = out_seq;
            }
            if (ts_delta(out_ts, r->ref_ts) > 0) {
                r->ref_ts = out_ts;
                r->ref_s = now;
            }
            r->out_ts = out_ts;
            return out_seq;
        }
    }
    /* first packet of an epoch */
    {
        uint16_t out_seq = (uint16_t)(r->highest_out_seq + 1);
        uint32_t out_ts;
        r->new_epoch = 0;
        r->bad_seq = -1;
        if (r->started) {
            double step = nearbyint((now - r->ref_s) * (double)r->clock_rate); /* half to even, as Python */
            if (step < 1.0)
                step = 1.0;
            out_ts = r->ref_ts + (uint32_t)(uint64_t)fmod(step, 4294967296.0);
        } else {
            r->started = 1;
            out_ts = r->first_ts;
        }
        r->seq_offset = (uint16_t)(out_seq - seq);
        r->ts_offset = out_ts - ts;
        r->highest_in_seq = seq;
        r->epoch_ext = 0;
        r->highest_out_seq = out_seq;
        r->out_ts = out_ts;
        r->ref_ts = out_ts;
        r->ref_s = now;
        return out_seq;
    }
}

int32_t sk_to_source_seq(const sk_rewriter *r, uint16_t out_seq)
{
    int32_t d;
    if (!r->started || r->new_epoch)
        return -1;
    d = seq_delta(out_seq, r->highest_out_seq);
    if (d > 0 || r->epoch_ext + d < 0)
        return -1;
    return (uint16_t)(out_seq - r->seq_offset);
}

/* ------------------------------------------------------------------ writer */

int sk_writer_open(sk_writer *w, uintptr_t srtp, int fd, const char *host, int port)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&w->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&w->addr;
    memset(&w->addr, 0, sizeof(w->addr));
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        w->addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        w->addrlen = sizeof(*a6);
    } else {
        w->srtp = 0;
        return -1;
    }
    w->fd = fd;
    w->srtp = srtp;
    return 0;
}

void sk_writer_close(sk_writer *w)
{
    w->srtp = 0;
    w->fd = -1;
}

/* Put the next transport-wide sequence number at ``offset`` of the buffer (2 bytes, inside the
 * packet's header extension) and remember it; returns its ring slot for the size. */
static inline sk_twcc_rec *writer_twcc(sk_writer *w, int offset, double now)
{
    uint16_t seq = w->twcc_seq++;
    sk_twcc_rec *rec = &w->twcc_ring[seq & (SK_TWCC_RING - 1)];
    w->buf[offset] = (uint8_t)(seq >> 8);
    w->buf[offset + 1] = (uint8_t)seq;
    rec->seq = seq;
    rec->send_us = (uint32_t)(uint64_t)(int64_t)(now * 1e6);
    return rec;
}

static inline int writer_emit(sk_writer *w, int len, sk_protect_fn protect)
{
    int n = len;
    if (protect((void *)w->srtp, w->buf, &n) != 0) {
        w->dropped++;
        return 0;
    }
    if (sendto(w->fd, w->buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&w->addr, w->addrlen) < 0) {
        w->dropped++; /* EAGAIN included: a full socket buffer drops, as UDP does */
        return 0;
    }
    w->sent_packets++;
    w->sent_bytes += (uint64_t)n;
    return n;
}

/* Protect and send a plain packet (RTP when rtcp == 0); returns the bytes sent, 0 if dropped. */
int sk_writer_send(sk_writer *w, const uint8_t *packet, int len, int rtcp)
{
    if (!w->srtp || len <= 0 || len > SK_MAX_PACKET)
        return 0;
    memcpy(w->buf, packet, (size_t)len);
    return writer_emit(w, len, rtcp ? sk_protect_rtcp : sk_protect_rtp);
}

/* Protect and send a plain RTP packet, stamping the transport-wide sequence number at
 * ``twcc_offset`` when the writer stamps (and ``twcc_offset`` >= 0); returns the bytes sent. */
int sk_writer_send_rtp(sk_writer *w, const uint8_t *packet, int len, int twcc_offset, double now)
{
    sk_twcc_rec *rec = 0;
    int sent;
    if (!w->srtp || len < 12 || len > SK_MAX_PACKET)
        return 0;
    memcpy(w->buf, packet, (size_t)len);
    if (twcc_offset >= 12 && twcc_offset + 2 <= len && w->twcc_on)
        rec = writer_twcc(w, twcc_offset, now);
    sent = writer_emit(w, len, sk_protect_rtp);
    if (rec)
        rec->size = (uint16_t)(sent ? sent : len);
    return sent;
}

/* ------------------------------------------------------------------ fan-out */

/* Forward one plain RTP packet (``seq``/``ts`` parsed by the caller) to ``n`` sinks; ``twcc_offset``
 * is where the transport-wide sequence number goes (-1: the packet has no room for one).
 * A sink waiting for a keyframe takes this packet only if ``keyframe`` and then starts a new
 * epoch; returns how many sinks stopped waiting. */
int sk_fanout(sk_sink **sinks, int n, const uint8_t *packet, int len, uint16_t seq, uint32_t ts,
              int keyframe, double now, int twcc_offset)
{
    int released = 0;
    uint8_t marker;
    if (len < 12 || len > SK_MAX_PACKET)
        return 0;
    if (twcc_offset < 12 || twcc_offset + 2 > len)
        twcc_offset = -1;
    marker = packet[1] & 0x80;
    for (int i = 0; i < n; i++) {
        sk_sink *s = sinks[i];
        sk_writer *w = s->writer;
        int32_t out_seq;
        int sent;
        if (s->passthrough) {
            if (w == 0 || !w->srtp)
                continue;
            memcpy(w->buf, packet, (size_t)len);
            w->buf[8] = (uint8_t)(s->ssrc >> 24);
            w->buf[9] = (uint8_t)(s->ssrc >> 16);
            w->buf[10] = (uint8_t)(s->ssrc >> 8);
            w->buf[11] = (uint8_t)s->ssrc;
            sent = writer_emit(w, len, sk_protect_rtp);
            if (sent) {
                s->packets++;
                s->octets += (uint64_t)sent;
            }
            continue;
        }
        if (s->waiting) {
            if (!keyframe)
                continue;
            s->waiting = 0;
            s->rw.new_epoch = 1;
            released++;
        }
        out_seq = sk_rewrite(&s->rw, seq, ts, now);
        if (out_seq < 0 || w == 0 || !w->srtp)
            continue;
        memcpy(w->buf, packet, (size_t)len);
        w->buf[1] = marker | s->pt;
        w->buf[2] = (uint8_t)(out_seq >> 8);
        w->buf[3] = (uint8_t)out_seq;
        w->buf[4] = (uint8_t)(s->rw.out_ts >> 24);
        w->buf[5] = (uint8_t)(s->rw.out_ts >> 16);
        w->buf[6] = (uint8_t)(s->rw.out_ts >> 8);
        w->buf[7] = (uint8_t)s->rw.out_ts;
        w->buf[8] = (uint8_t)(s->ssrc >> 24);
        w->buf[9] = (uint8_t)(s->ssrc >> 16);
        w->buf[10] = (uint8_t)(s->ssrc >> 8);
        w->buf[11] = (uint8_t)s->ssrc;
        if (twcc_offset >= 0 && w->twcc_on) {
            sk_twcc_rec *rec = writer_twcc(w, twcc_offset, now);
            sent = writer_emit(w, len, sk_protect_rtp);
            rec->size = (uint16_t)(sent ? sent : len);
        } else {
            sent = writer_emit(w, len, sk_protect_rtp);
        }
        if (sent) {
            s->packets++;
            s->octets += (uint64_t)sent;
        }
    }
    return released;
}

/* ------------------------------------------------------------------ header extensions */

#define SK_ONE_BYTE 0xBEDE
#define SK_TWO_BYTE 0x1000

/* The extension block of ``p``: its profile (0: none), where its elements start and end;
 * -1 if the header is malformed (as media/rtp.py _ext_block raises). */
static inline int ext_block(const uint8_t *p, int len, int *start, int *end)
{
    int pos;
    if (len < 12 || (p[0] >> 6) != 2)
        return -1;
    pos = 12 + 4 * (p[0] & 0x0F);
    if (!(p[0] & 0x10)) {
        if (len < pos)
            return -1;
        *start = *end = pos;
        return 0;
    }
    if (len < pos + 4)
        return -1;
    *start = pos + 4;
    *end = pos + 4 + 4 * ((p[pos + 2] << 8) | p[pos + 3]);
    if (len < *end)
        return -1;
    return (p[pos] << 8) | p[pos + 1];
}

/* Offset of the data of element ``id``: -1 absent, -2 malformed (media/rtp.py find_extension is
 * this function). */
int sk_ext_find(const uint8_t *p, int len, int id)
{
    int pos, end, profile = ext_block(p, len, &pos, &end);
    if (profile < 0)
        return -2;
    if (profile == SK_ONE_BYTE) {
        while (pos < end) {
            int b = p[pos], i = b >> 4, n;
            if (i == 0) {
                pos++;
                continue;
            }
            if (i == 15)
                return -1;
            pos++;
            n = (b & 0x0F) + 1;
            if (pos + n > end)
                return -2;
            if (i == id)
                return pos;
            pos += n;
        }
    } else if ((profile & 0xFFF0) == SK_TWO_BYTE) {
        while (pos < end) {
            int i = p[pos], n;
            if (i == 0) {
                pos++;
                continue;
            }
            if (pos + 2 > end)
                return -2;
            n = p[pos + 1];
            pos += 2;
            if (pos + n > end)
                return -2;
            if (i == id)
                return pos;
            pos += n;
        }
    }
    return -1;
}

/* Renumber every element id i to table[i] in place (media/rtp.py remap_extension_ids is this
 * function); ``tlen`` entries (16 at least for the one-byte profile; a two-byte packet keeps ids
 * beyond the table).  -1 if the packet must be dropped (malformed, or an id mapped to 0, or to 15
 * in the one-byte profile: the elements before it are renumbered already). */
int sk_ext_remap(uint8_t *p, int len, const uint8_t *table, int tlen)
{
    int pos, end, profile = ext_block(p, len, &pos, &end);
    if (profile < 0)
        return -1;
    if (profile == SK_ONE_BYTE) {
        if (tlen < 16)
            return -1;
        while (pos < end) {
            int b = p[pos], i = b >> 4, n;
            if (i == 0) {
                pos++;
                continue;
            }
            if (i == 15)
                return 0;
            n = table[i];
            if (n == 0 || n >= 15)
                return -1;
            p[pos] = (uint8_t)((n << 4) | (b & 0x0F));
            pos += 2 + (b & 0x0F);
        }
        return pos > end ? -1 : 0;
    }
    if ((profile & 0xFFF0) == SK_TWO_BYTE) {
        while (pos < end) {
            int i = p[pos];
            if (i == 0) {
                pos++;
                continue;
            }
            if (pos + 2 > end)
                return -1;
            if (i < tlen) {
                if (table[i] == 0)
                    return -1;
                p[pos] = table[i];
            }
            pos += 2 + p[pos + 1];
        }
        return pos > end ? -1 : 0;
    }
    return 0;
}

/* Append a zeroed 2-byte element ``id`` to the packet in ``p`` (room for SK_ADD_ROOM more bytes
 * after ``*len``), as media/rtp.py add_extension does: the offset of its data, -1 if impossible. */
static int ext_add2(uint8_t *p, int *len, int id)
{
    int pos, end, profile = ext_block(p, *len, &pos, &end), elen, words, data;
    uint8_t el[8];
    memset(el, 0, sizeof(el));
    if (profile == 0 || profile == SK_ONE_BYTE) {
        if (id < 1 || id > 14)
            return -1;
        el[0] = (uint8_t)((id << 4) | 1);
        elen = 4; /* 3 bytes, padded to a word */
    } else if ((profile & 0xFFF0) == SK_TWO_BYTE) {
        if (id < 1 || id > 255)
            return -1;
        el[0] = (uint8_t)id;
        el[1] = 2;
        elen = 4;
    } else {
        return -1;
    }
    if (profile == 0) {
        /* a one-byte block after the CSRCs: 4 bytes of block header + the element */
        if (*len + 4 + elen > SK_MAX_PACKET)
            return -1;
        memmove(p + pos + 4 + elen, p + pos, (size_t)(*len - pos));
        p[pos] = 0xBE;
        p[pos + 1] = 0xDE;
        p[pos + 2] = 0;
        p[pos + 3] = (uint8_t)(elen / 4);
        memcpy(p + pos + 4, el, (size_t)elen);
        p[0] |= 0x10;
        *len += 4 + elen;
        return pos + 5;
    }
    words = (end - pos + elen) / 4;
    if (words > 0xFFFF || *len + elen > SK_MAX_PACKET)
        return -1;
    memmove(p + end + elen, p + end, (size_t)(*len - end));
    memcpy(p + end, el, (size_t)elen);
    p[pos - 2] = (uint8_t)(words >> 8);
    p[pos - 1] = (uint8_t)words;
    *len += elen;
    data = end + (profile == SK_ONE_BYTE ? 1 : 2);
    return data;
}

/* ------------------------------------------------------------------ receive statistics */

#define SK_STATS_MAX_DROPOUT 3000
#define SK_STATS_MAX_MISORDER 100
#define SK_BITRATE_WINDOW_S 2.0

static void rstats_init_seq(sk_rstats *s, uint16_t seq)
{
    s->base_seq = seq;
    s->max_seq = seq;
    s->bad_seq = -1;
    s->cycles = 0;
    s->received = 0;
    s->expected_prior = 0;
    s->received_prior = 0;
}

void sk_rstats_roll(sk_rstats *s, double now)
{
    double elapsed = now - s->bucket_start_s;
    if (elapsed >= SK_BITRATE_WINDOW_S) {
        if (elapsed >= 2 * SK_BITRATE_WINDOW_S) {
            s->prev_bucket_bytes = 0;
            s->bucket_start_s = now;
        } else {
            s->prev_bucket_bytes = s->bucket_bytes;
            s->bucket_start_s += SK_BITRATE_WINDOW_S;
        }
        s->bucket_bytes = 0;
        s->has_prev_bucket = 1;
    }
}

/* One packet of the stream (RFC 3550 A.1 without probation, A.8 jitter): media/rtpstats.py. */
void sk_rstats_update(sk_rstats *s, uint16_t seq, uint32_t ts, double now, int size)
{
    int64_t arrival = (int64_t)(now * (double)s->clock_rate + 0.5);
    if (!s->started) {
        s->started = 1;
        rstats_init_seq(s, seq);
        s->transit = arrival - (int64_t)ts;
        s->first_arrival_s = now;
        s->bucket_start_s = now;
    } else {
        uint16_t udelta = (uint16_t)(seq - s->max_seq);
        int64_t transit, d;
        if (udelta < SK_STATS_MAX_DROPOUT) {
            if (seq < s->max_seq)
                s->cycles += 65536;
            s->max_seq = seq;
        } else if (udelta <= 65536 - SK_STATS_MAX_MISORDER) {
            if ((int32_t)seq == s->bad_seq) {
                rstats_init_seq(s, seq); /* two sequential packets: the source restarted */
            } else {
                s->bad_seq = (uint16_t)(seq + 1);
                return;
            }
        }
        transit = arrival - (int64_t)ts;
        d = ((transit - s->transit + 0x80000000LL) & 0xFFFFFFFFLL) - 0x80000000LL;
        s->transit = transit;
        if (d < 0)
            d = -d;
        s->jitter_q4 += d - ((s->jitter_q4 + 8) >> 4);
    }
    s->received++;
    sk_rstats_roll(s, now);
    s->bucket_bytes += size;
}

/* ------------------------------------------------------------------ packet cache */

void sk_cache_clear(sk_cache *c);

void sk_cache_init(sk_cache *c, sk_cache_slot *slots, uint32_t nslots, uint8_t *arena, uint32_t arena_size,
                   double max_age_s)
{
    c->slots = slots;
    c->mask = nslots - 1;
    c->arena = arena;
    c->arena_size = arena_size;
    c->max_age_s = max_age_s;
    sk_cache_clear(c);
}

void sk_cache_clear(sk_cache *c)
{
    for (uint32_t i = 0; i <= c->mask; i++)
        c->slots[i].seq = -1;
    c->head = 0;
}

/* Keep ``len`` bytes under ``seq``: the arena is a ring of bytes, a packet never wraps inside it
 * (the tail is skipped), and a slot whose bytes were written over is no longer answered. */
void sk_cache_put(sk_cache *c, uint16_t seq, const uint8_t *pkt, int len, double now)
{
    uint64_t pos = c->head;
    uint32_t at;
    sk_cache_slot *slot;
    if (len <= 0 || (uint32_t)len > c->arena_size)
        return;
    at = (uint32_t)(pos % c->arena_size);
    if (at + (uint32_t)len > c->arena_size) {
        pos += c->arena_size - at;
        at = 0;
    }
    memcpy(c->arena + at, pkt, (size_t)len);
    slot = &c->slots[seq & c->mask];
    slot->seq = seq;
    slot->len = (uint32_t)len;
    slot->pos = pos;
    slot->time = now;
    c->head = pos + (uint64_t)len;
}

/* Copy the packet kept under ``seq`` into ``out`` (room for SK_RECV_MAX): its length, or -1 when
 * not kept, older than max_age_s, or written over. */
int sk_cache_get(const sk_cache *c, uint16_t seq, double now, uint8_t *out)
{
    const sk_cache_slot *slot = &c->slots[seq & c->mask];
    if (slot->seq != (int32_t)seq || now - slot->time > c->max_age_s)
        return -1;
    if (c->head - slot->pos > c->arena_size || slot->len > SK_RECV_MAX)
        return -1;
    memcpy(out, c->arena + (slot->pos % c->arena_size), slot->len);
    return (int)slot->len;
}

/* ------------------------------------------------------------------ producer stream */

/* Forward ``pkt`` (as it came, or as converted by the caller) to group ``gi``: renumber its
 * extension ids, stamp abs-send-time, make room for the transport-wide sequence number, fan out.
 * Returns how many sinks stopped waiting; -1 if the packet could not be edited (dropped). */
int sk_stream_forward(sk_stream *s, int gi, const uint8_t *pkt, int len, uint16_t seq, uint32_t ts,
                      int keyframe, double now)
{
    sk_group *g;
    const uint8_t *out = pkt;
    int n = len, ast = -1, twcc = -1;
    if (gi < 0 || gi >= s->ngroups || len < 12 || len > SK_MAX_PACKET)
        return -1;
    g = &s->groups[gi];
    if (s->ast_id) {
        ast = sk_ext_find(pkt, len, s->ast_id);
        if (ast == -2)
            ast = -1;
    }
    if (g->remap || ast >= 0 || g->twcc_id) {
        uint8_t *b = s->scratch;
        memcpy(b, pkt, (size_t)len);
        if (g->remap && sk_ext_remap(b, n, g->table, 16) < 0)
            return -1;
        if (ast >= 0 && ast + 3 <= n) {
            uint32_t v = (uint32_t)(int64_t)(now * 262144.0) & 0xFFFFFF;
            b[ast] = (uint8_t)(v >> 16);
            b[ast + 1] = (uint8_t)(v >> 8);
            b[ast + 2] = (uint8_t)v;
        }
        if (g->twcc_id) {
            twcc = sk_ext_find(b, n, g->twcc_id);
            if (twcc == -1)
                twcc = ext_add2(b, &n, g->twcc_id);
            if (twcc < 0)
                twcc = -1;
        }
        out = b;
    }
    return sk_fanout(g->sinks, g->count, out, n, seq, ts, keyframe, now, twcc);
}

/* The in-order case of a producer stream's receive path, whole, in C: a packet of the stream's
 * own payload type (or its RED, passed on as RED) that follows the newest one, while no attached
 * consumer waits for a keyframe, the producer is not paused and nothing needs Python (recorder,
 * RED conversion): statistics, the NACK generator's newest number, the cache, every group.
 * Returns 1 if done; 0 if the packet is for Python's path (nothing was changed then). */
/* Count an audio packet's RFC 6464 level (one byte: V bit, then -dBov in 7 bits) in its bin: a speech
 * meter reads and clears the bins every second (media/speech.py).  Called by both receive paths. */
void sk_level_note(sk_stream *s, const uint8_t *pkt, int len)
{
    int off;
    if (!s->level_id)
        return;
    off = sk_ext_find(pkt, len, s->level_id);
    if (off < 0)
        return;
    s->level_bins[(pkt[off] & 0x7F) >> 3]++;
    if (pkt[off] & 0x80)
        s->level_voiced++;
}

int sk_stream_receive(sk_stream *s, const uint8_t *pkt, int len, double now)
{
    uint8_t pt;
    uint16_t seq;
    uint32_t ts;
    int red, start, end, profile;
    if (s->paused || s->waiting || s->slow || len < 12 || len > SK_MAX_PACKET)
        return 0;
    pt = pkt[1] & 0x7F;
    red = pt == s->red_pt;
    if (pt != s->pt && !red)
        return 0;
    seq = (uint16_t)((pkt[2] << 8) | pkt[3]);
    ts = ((uint32_t)pkt[4] << 24) | ((uint32_t)pkt[5] << 16) | ((uint32_t)pkt[6] << 8) | pkt[7];
    if (!red && s->red_groups)
        return 0; /* plain Opus to RED subscribers: Python wraps it */
    if (s->has_nack && (s->nack_highest < 0 || (uint16_t)(s->nack_highest + 1) != seq))
        return 0;
    profile = ext_block(pkt, len, &start, &end);
    if (profile < 0)
        return 0;
    if (s->has_nack)
        s->nack_highest++;
    sk_rstats_update(&s->stats, seq, ts, now, len);
    s->last_ts = ts;
    s->last_arrival = now;
    if (s->level_id)
        sk_level_note(s, pkt, len);
    if (red)
        s->red_received++;
    else if (s->cache)
        sk_cache_put(s->cache, seq, pkt, len, now);
    for (int i = 0; i < s->ngroups; i++)
        sk_stream_forward(s, i, pkt, len, seq, ts, 0, now);
    s->fast_packets++;
    return 1;
}

/* ------------------------------------------------------------------ transport-cc arrivals */

void sk_arrivals_init(sk_arrivals *a)
{
    memset(a, 0, sizeof(*a));
    a->highest = -1;
    a->next = -1;
    for (int i = 0; i < SK_ARRIVAL_RING; i++)
        a->seqs[i] = -1;
}

/* Note the arrival of one plain RTP packet (media/transportcc.py ArrivalRecorder.record says how a
 * duplicate and a late packet are treated). */
void sk_arrivals_record(sk_arrivals *a, const uint8_t *plain, int len, double now)
{
    int off;
    uint16_t seq;
    int64_t ext, highest = a->highest;
    int slot;
    if (!a->ext_id)
        return;
    off = sk_ext_find(plain, len, a->ext_id);
    if (off < 0 || off + 2 > len)
        return;
    seq = (uint16_t)((plain[off] << 8) | plain[off + 1]);
    if (highest < 0) {
        ext = (int64_t)seq + 65536; /* room to unwrap backwards */
        a->next = ext;
    } else {
        uint16_t d = (uint16_t)(seq - (uint16_t)highest);
        ext = d < 0x8000 ? highest + d : highest + d - 0x10000;
    }
    slot = (int)(ext & (SK_ARRIVAL_RING - 1));
    if (a->seqs[slot] == ext)
        return; /* a duplicate */
    if (ext > highest)
        a->highest = ext;
    else if (ext < a->next && highest - ext < SK_ARRIVAL_MAX_PENDING)
        a->next = ext;
    a->seqs[slot] = ext;
    a->times[slot] = (int64_t)(now * 1e6);
    a->received++;
}

/* ------------------------------------------------------------------ a publisher's socket */

/* One SRTP packet from a publisher's selected address: unprotected into r->buf, its arrival noted
 * for transport-cc feedback, then, if its SSRC is one of ``d``'s streams and the packet is that
 * stream's in-order case, received whole (sk_stream_receive); ``a`` may be 0 (a pipe between
 * workers has no transport-cc).  Returns 0 when done, the plain
 * length when Python's path must take the packet from r->buf (its arrival is noted already), -1
 * when SRTP refused it (counted) or it has no RTP header. */
int sk_receive_rtp(sk_reader *r, const sk_demux *d, sk_arrivals *a, const uint8_t *packet, int len, double now)
{
    int n = sk_unprotect(r, packet, len, 0);
    uint32_t ssrc;
    if (n < 12)
        return -1;
    if (a && a->ext_id)
        sk_arrivals_record(a, r->buf, n, now);
    ssrc = ((uint32_t)r->buf[8] << 24) | ((uint32_t)r->buf[9] << 16) | ((uint32_t)r->buf[10] << 8) | r->buf[11];
    for (int i = 0; i < d->n; i++) {
        if (d->ssrc[i] == ssrc)
            return sk_stream_receive(d->stream[i], r->buf, n, now) ? 0 : n;
    }
    return n;
}
