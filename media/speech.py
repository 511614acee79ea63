"""Who is speaking, per audio producer, from the RFC 6464 audio levels its publisher sends.

Browsers (and aiortc) put a one-byte ``ssrc-audio-level`` header extension on every audio packet: the
level of that packet's audio in -dBov (0 loudest, 127 silence) and, from browsers, a voice-activity bit.
The receive paths count each packet's level in its stream's bins (``sk_level_note`` in ``media/fastpath.c``:
an extension lookup and two increments, no decoding, nothing allocated); ``SpeechMeter.sample``, called
once a second by the worker, reads and clears the bins of every audio producer of a router and says which
of them spoke in that second.  A second is speech when at least ``SPEECH_SHARE`` of its packets were
louder than ``LOUD_DBOV`` or carried the voice bit: a classroom's microphone hears the room at a steady low
level, a voice is well above it; one loud packet (a cough, a chair) is not a second of speech.

No audio is decoded, kept or sent anywhere: only "spoke in this second" leaves this module.  It knows
nothing of lessons, roles or time beyond the second it is asked about; the worker reports the set of
speaking producers when it changes (``speech`` event) and signaling turns that into the lesson's speech
events (``signaling.media``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from media.producer import Producer

LOUD_DBOV = 48
"""Packets louder than -48 dBov count as voice (the bins below 48 // 8)."""
SPEECH_SHARE = 0.25
"""The share of a second's packets that must be voice for the second to be speech."""
_LOUD_BINS = LOUD_DBOV // 8


def spoke(bins: list[int], voiced: int) -> bool:
    """Whether a second with these level bins (packets by -dBov / 8) and voice-bit count was speech."""
    packets = sum(bins)
    if packets == 0:
        return False
    loud = sum(bins[:_LOUD_BINS])
    return max(loud, voiced) >= SPEECH_SHARE * packets


class SpeechMeter:
    """The speaking audio producers of one router, second by second."""

    def sample(self, producers: list[Producer]) -> set[str]:
        """The ids of the producers that spoke since the last call (their bins are cleared)."""
        speaking: set[str] = set()
        for producer in producers:
            if not producer.audio_level_id or producer.closed:
                continue
            for stream in producer.streams:
                c = stream.c
                bins = list(c.level_bins)
                voiced = int(c.level_voiced)
                for i in range(len(bins)):
                    c.level_bins[i] = 0
                c.level_voiced = 0
                if spoke(bins, voiced):
                    speaking.add(producer.producer_id)
        return speaking
