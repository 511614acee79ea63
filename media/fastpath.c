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
 * The receiving side: sk_reader unprotects an incoming SRTP/SRTCP packet into its own buffer (one
 * call; media/srtp.py SrtpReader).  In a small lesson a worker wakes a few hundred times a second
 * for one or two packets, and then every line of Python runs with cold caches: pylibsrtp's
 * wrapper around srtp_unprotect cost ~55 us a packet there, against a few us in a hot loop.
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
