"""A live LL-HLS folder as the media worker writes it (the layout ``server.core.hls_files`` serves), for tests
of the serving side: playlists and small files with the contract's names; what the parts hold does not
matter here.  Time is whatever the test says (``start`` for the first program date-time): no clock is read.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from server.core import hls_files

PART_S = 0.334
PARTS_PER_SEGMENT = 6
WINDOW = 4
"""Full segments kept in the playlist; the parts of the last two are listed."""


class LiveRendition:
    """One rendition's folder (``camera/``, ``audio/`` …): ``add_part`` writes the next part (and, every
    ``PARTS_PER_SEGMENT``, the full segment it completes), then replaces the playlist atomically."""

    def __init__(self, folder: Path, start: datetime, *, first_msn: int = 0,
                 parts_per_segment: int = PARTS_PER_SEGMENT) -> None:
        self.folder = folder
        self.per_segment = parts_per_segment
        self.start = start
        self.first_msn = first_msn
        self.done: list[int] = []
        self.msn = first_msn
        self.parts = 0
        self.ended = False
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "init.mp4").write_bytes(b"\x00\x00\x00\x18ftypiso6" + folder.name.encode())
        self.write_playlist()

    @property
    def playlist(self) -> Path:
        return self.folder / hls_files.MEDIA_PLAYLIST

    @property
    def hint(self) -> str:
        return f"s{self.msn}.{self.parts}.m4s"

    def part_bytes(self, msn: int, part: int) -> bytes:
        return f"{self.folder.name} part {msn}.{part}".encode() * 50

    def add_part(self) -> str:
        """Write the hinted part (and the segment it completes); answers its name."""
        name = self.hint
        (self.folder / name).write_bytes(self.part_bytes(self.msn, self.parts))
        self.parts += 1
        if self.parts == self.per_segment:
            (self.folder / f"s{self.msn}.m4s").write_bytes(
                b"".join(self.part_bytes(self.msn, p) for p in range(self.per_segment)))
            self.done.append(self.msn)
            self.msn, self.parts = self.msn + 1, 0
        self.write_playlist()
        return name

    def end(self) -> None:
        self.ended = True
        self.write_playlist()

    def text(self) -> str:
        window = self.done[-WINDOW:]
        first = window[0] if window else self.msn
        segment_s = PART_S * self.per_segment
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", f"#EXT-X-TARGETDURATION:{round(segment_s)}",
                 f"#EXT-X-PART-INF:PART-TARGET={PART_S}",
                 f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * PART_S:.3f}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first}", '#EXT-X-MAP:URI="init.mp4"']
        pdt = self.start + timedelta(seconds=(first - self.first_msn) * segment_s)
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt.isoformat(timespec='milliseconds')}+08:00")
        for msn in window:
            if msn >= self.msn - 2:
                lines += [f'#EXT-X-PART:DURATION={PART_S},URI="s{msn}.{p}.m4s"' + (",INDEPENDENT=YES" if p == 0 else "")
                          for p in range(self.per_segment)]
            lines += [f"#EXTINF:{segment_s:.3f},", f"s{msn}.m4s"]
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            lines += [f'#EXT-X-PART:DURATION={PART_S},URI="s{self.msn}.{p}.m4s"' + (",INDEPENDENT=YES" if p == 0 else "")
                      for p in range(self.parts)]
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.hint}"')
        return "\n".join(lines) + "\n"

    def write_playlist(self) -> None:
        tmp = self.folder / ".index.m3u8.tmp"
        tmp.write_text(self.text())
        os.replace(tmp, self.playlist)


def live_lesson(data_dir: Path, lesson_id: int, recording_id: int, start: datetime) -> dict[str, LiveRendition]:
    """A lesson whose stream began: its recording's ``hls/`` folder with ``main.m3u8`` and a camera and an
    audio rendition, linked as the server links it when the recording begins."""
    recording = data_dir / "recordings" / str(lesson_id) / str(recording_id)
    hls = recording / hls_files.HLS_DIR
    renditions = {name: LiveRendition(hls / name, start) for name in ("camera", "audio")}
    (hls / "main.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="声音",DEFAULT=YES,AUTOSELECT=YES,URI="audio/index.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1500000,CODECS="avc1.42e01f,mp4a.40.2",AUDIO="aac"\ncamera/index.m3u8\n')
    hls_files.point_lesson(data_dir, lesson_id, recording)
    return renditions
