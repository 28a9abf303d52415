"""Video probing and frame sampling for the analyzers.

Sampling strategy
-----------------
The analyzers want one frame about every ``interval_s`` seconds, at the times
``0, interval, 2*interval, ...``: for each target time we return the first frame
whose presentation time is at or after it. Decoding is what costs, so the goal is to
decode as few frames as possible while never decoding anything twice:

1. Only the video stream is demuxed (other streams are set to ``discard=all``), so
   a broken audio stream cannot stop us.
2. Before each target we ask the demuxer's index (``stream.index_entries``) for the
   last keyframe at or before the target. If that keyframe lies *ahead* of what the
   decoder has already been fed, a real ``container.seek`` is cheaper than decoding
   up to it, and it skips reading the bytes in between too. MP4 indexes list every
   sample, so dense-keyframe h264 is sampled almost purely by seeking.
3. Whether or not we seeked, we then read packets up to the target *without decoding
   them* (demuxing costs a tiny fraction of decoding). If one of them is a keyframe
   at or before the target, everything before it is dropped and the decoder is
   flushed: a seek done by hand. This covers containers whose index is incomplete
   (e.g. a WebM whose cues list a single keyframe, where ``container.seek`` lands on
   a keyframe we already passed and, if used naively, returns the same frame again
   or re-decodes the same stretch many times). When no keyframe lies between the
   decoder's position and the target, every packet is needed anyway and is decoded.
4. Decoding then runs forward to the first frame at or after the target. Packets
   shown before the target are decoded with ``skip_frame=NONREF``, so B-frames that
   nothing references are not decoded just to be thrown away. Frame times come from
   ``pts * time_base`` (never frame counts), so variable frame rate works.

Because the decoder only ever moves forward, or jumps to a keyframe beyond
everything it has decoded, no stretch is decoded twice, frames come out in
increasing time, and the same frame is never returned twice. A file without a
duration header needs no special case: the same loop simply runs until the end of
the stream. With a known duration the loop stops at the last target before it. If
the stream ends before a target (duration headers round up, files get truncated),
its last frame is returned instead when it is more than half an interval after the
previous sample, so the tail of a clip is represented.

Limitation: containers without a seek index (MPEG-TS, some AVI) are read end to end;
skipped stretches are only demuxed, never decoded, so this costs I/O, not decoding.

Images are converted by libswscale straight to BGR at the requested size (one pass,
no full-size intermediate) and then turned upright using the display-matrix rotation
that PyAV >= 13 exposes per decoded frame as ``VideoFrame.rotation``. Mirroring in a
display matrix is not exposed by PyAV and is ignored (it is practically never used).

Times are relative to the video stream's ``start_time``, so ``t`` matches what a
player shows even for MPEG-TS files whose timestamps start at an arbitrary value.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.video.frame
import av.video.stream
import numpy as np
from av.stream import Discard, Disposition

log = logging.getLogger(__name__)

# Tolerance when comparing a frame time against a target: timestamps are rounded to
# the stream time base, so a frame meant to be at 2.0 s may carry 1.99996 s.
_EPS_S = 1e-3
# Cap on compressed data held while looking ahead for a keyframe; past it we give up
# skipping and just decode (only reachable with very long intervals or bitrates).
_LOOKAHEAD_MAX_BYTES = 64 * 1024 * 1024
# Packets probe_video may feed before giving up on reading the rotation of a frame.
_PROBE_MAX_PACKETS = 64

_AvFrame = av.video.frame.VideoFrame


class VideoError(Exception):
    """The file cannot be used as a video; the message says why."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float | None  # seconds; None when the container does not say
    width: int  # upright display size (rotation and pixel aspect applied)
    height: int
    fps: float | None
    codec: str


# eq=False: comparing numpy arrays element-wise inside a generated __eq__ would raise.
@dataclass(frozen=True, eq=False)
class Frame:
    t: float  # presentation time in seconds from the start of the video stream
    image: np.ndarray  # BGR uint8, upright, H x W x 3


# --------------------------------------------------------------------------- opening


def _open(path: Path) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into a VideoError."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise VideoError(f"cannot open: {exc.strerror or exc}") from exc
    if size == 0:
        raise VideoError("zero-byte file")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot open: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    # FFmpegError.strerror is FFmpeg's own message without the file name appended.
    return str(getattr(exc, "strerror", None) or exc)


def _video_stream(
    container: av.container.InputContainer, threads: int
) -> av.video.stream.VideoStream:
    """Pick the first real video stream and make the demuxer drop all other streams."""
    # Cover art (attached_pic) shows up as a one-frame "video" stream in audio files.
    videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not videos:
        raise VideoError("no video stream")
    stream = videos[0]
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all
    ctx = stream.codec_context
    # Must be set before the decoder opens (PyAV opens it on the first decode).
    ctx.thread_type = "AUTO"
    ctx.thread_count = max(1, threads)
    return stream


def _duration_s(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


# --------------------------------------------------------------------- image helpers


def _sar(stream: av.video.stream.VideoStream) -> Fraction:
    """Pixel aspect ratio; 1 when unknown (PyAV reports None for square pixels)."""
    sar = stream.sample_aspect_ratio
    return Fraction(sar) if sar and sar > 0 else Fraction(1)


def _display_dims(width: int, height: int, sar: Fraction) -> tuple[int, int]:
    """Square-pixel size of a coded picture (anamorphic video stretches the width)."""
    if sar != 1:
        width = max(1, round(width * sar))
    return width, height


def _scaled_dims(width: int, height: int, min_long_side: int) -> tuple[int, int]:
    """Smallest size with long side >= min_long_side, same aspect, never upscaled."""
    long_side = max(width, height)
    if min_long_side <= 0 or min_long_side >= long_side:
        return width, height
    scale = min_long_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _quarter_turns(frame: _AvFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that make the frame upright."""
    # VideoFrame.rotation is the display matrix's counter-clockwise angle; a player
    # turns the coded picture by exactly that to show it, so we do the same.
    return round(frame.rotation / 90) % 4


def _upright_dims(frame: _AvFrame, sar: Fraction) -> tuple[int, int]:
    width, height = _display_dims(frame.width, frame.height, sar)
    return (height, width) if _quarter_turns(frame) % 2 else (width, height)


def _to_bgr(frame: _AvFrame, sar: Fraction, min_long_side: int) -> np.ndarray:
    # Scale in libswscale during the colour conversion: one pass, no full-size copy.
    width, height = _display_dims(frame.width, frame.height, sar)
    width, height = _scaled_dims(width, height, min_long_side)
    image = frame.to_ndarray(format="bgr24", width=width, height=height)
    turns = _quarter_turns(frame)
    if turns:
        image = np.ascontiguousarray(np.rot90(image, k=turns))
    return image


# --------------------------------------------------------------------------- probing


def _first_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> _AvFrame | None:
    """Decode just enough to get one frame (rotation is only exposed on frames)."""
    for count, packet in enumerate(_safe_demux(container, stream)):
        frames = _safe_decode(stream, packet)
        if frames:
            return frames[0]
        if count >= _PROBE_MAX_PACKETS:
            break
    return None


def probe_video(path: Path) -> VideoInfo:
    """Container facts plus the upright display size (decodes at most one frame)."""
    with _open(path) as container:
        stream = _video_stream(container, threads=1)
        sar = _sar(stream)
        width, height = _display_dims(stream.width, stream.height, sar)
        first = _first_frame(container, stream)
        if first is not None:
            width, height = _upright_dims(first, sar)
        return VideoInfo(
            duration=_duration_s(container, stream),
            width=width,
            height=height,
            fps=_fps(stream),
            codec=stream.codec_context.name,
        )


# ------------------------------------------------------------------ packets / frames


def _safe_demux(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Generator[av.Packet, None, None]:
    """Video packets until the end or the first unreadable spot (e.g. truncation)."""
    packets = container.demux(stream)
    try:
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as exc:
                log.debug("demux stopped: %s", _reason(exc))
                return
            yield packet
    finally:
        packets.close()


def _safe_decode(stream: av.video.stream.VideoStream, packet: av.Packet | None) -> list[_AvFrame]:
    """Decode one packet (None drains); a corrupt packet costs its frames, not the file."""
    try:
        if packet is None:
            return list(stream.codec_context.decode(None))
        return list(packet.decode())
    except (av.FFmpegError, ValueError) as exc:
        log.debug("skipping undecodable packet: %s", _reason(exc))
        return []


def _packet_pts(packet: av.Packet) -> int | None:
    return packet.pts if packet.pts is not None else packet.dts


# -------------------------------------------------------------------------- sampling


class _Sampler:
    """Forward-only decoder that can jump to keyframes ahead of its position."""

    def __init__(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> None:
        self._container = container
        self._stream = stream
        self._time_base = stream.time_base or Fraction(1, 1000)
        self._start = stream.start_time or 0
        self._fallback_step = 1 / (_fps(stream) or 25.0)
        self._packets: Generator[av.Packet, None, None] = _safe_demux(container, stream)
        self._pending: deque[av.Packet] = deque()  # read ahead, not yet decoded
        self._ready: deque[_AvFrame] = deque()  # decoded, not yet looked at
        self._fed_pts: int | None = None  # highest pts given to the decoder
        self._drained = False
        self._skipping = False  # decoder currently told to skip non-reference frames
        self.last: tuple[float, _AvFrame] | None = None  # latest decoded frame

    # -- time conversion
    def _to_pts(self, t: float) -> int:
        return self._start + math.floor(Fraction(t) / self._time_base)

    def _to_t(self, pts: int) -> float:
        return float((pts - self._start) * self._time_base)

    def _frame_t(self, frame: _AvFrame) -> float:
        if frame.pts is not None:
            return self._to_t(frame.pts)
        # No timestamp at all (rare, broken muxers): assume a constant frame rate.
        return self.last[0] + self._fallback_step if self.last else 0.0

    # -- positioning
    def reposition(self, target: float) -> None:
        """Get the decoder as close to ``target`` as possible without going back."""
        if self._fed_pts is not None and self._to_t(self._fed_pts) >= target - _EPS_S:
            return  # frames at/after target are already in the decoder's pipeline
        # At t=0 the decoder is already at the first keyframe; seeking would only
        # cost a demuxer reset.
        if target > 0 and self._index_keyframe_ahead(target):
            self._seek(target)
        self._skip_to_keyframe(target)

    def _index_keyframe_ahead(self, target: float) -> bool:
        """True when the demuxer index has a keyframe <= target that we have not fed."""
        entries = self._stream.index_entries
        if not len(entries):
            return False
        i = entries.search_timestamp(self._to_pts(target), backward=True)
        if i < 0:
            return False
        # MP4 index times are decode times, which never exceed presentation times,
        # so "index time > fed pts" reliably means the keyframe is still ahead.
        return self._fed_pts is None or entries[i].timestamp > self._fed_pts

    def _seek(self, target: float) -> None:
        try:
            self._container.seek(self._to_pts(target), stream=self._stream, backward=True)
        except (av.FFmpegError, OSError) as exc:
            log.debug("seek failed, decoding forward instead: %s", _reason(exc))
            return
        # PyAV's seek already flushed the decoder; forget what we held and read anew.
        self._packets.close()
        self._packets = _safe_demux(self._container, self._stream)
        self._reset_decoder_state(flush=False)

    def _reset_decoder_state(self, *, flush: bool) -> None:
        if flush:
            self._stream.codec_context.flush_buffers()
        self._pending.clear()
        self._ready.clear()
        self._fed_pts = None
        self._drained = False

    def _skip_to_keyframe(self, target: float) -> None:
        """Read (not decode) up to target; restart decoding at the last keyframe seen."""
        target_pts = self._to_pts(target) + 1  # +1: tolerate pts rounded down
        buffered: list[av.Packet] = []
        keyframe_at = 0
        held = 0
        while (packet := self._next_packet()) is not None:
            buffered.append(packet)
            held += packet.size
            pts = _packet_pts(packet)
            if pts is None:
                continue
            if packet.is_keyframe and pts <= target_pts:
                keyframe_at = len(buffered) - 1
            if pts >= target_pts or held > _LOOKAHEAD_MAX_BYTES:
                break
        unread = list(self._pending)
        if keyframe_at > 0:  # packets before the keyframe are not needed: drop them
            self._reset_decoder_state(flush=True)
            buffered = buffered[keyframe_at:]
        self._pending = deque(buffered + unread)

    def close(self) -> None:
        # Close our demux generator while the container is still open.
        self._packets.close()

    def _next_packet(self) -> av.Packet | None:
        return self._pending.popleft() if self._pending else next(self._packets, None)

    # -- decoding
    def next_at_or_after(self, target: float) -> tuple[float, _AvFrame] | None:
        """First decoded frame with t >= target, or None at the end of the stream."""
        while True:
            while self._ready:
                frame = self._ready.popleft()
                self.last = (self._frame_t(frame), frame)
                if self.last[0] >= target - _EPS_S:
                    return self.last
            if not self._feed_one(self._to_pts(target - _EPS_S)):
                return None

    def _feed_one(self, target_pts: int) -> bool:
        """Decode one more packet into _ready; False when nothing is left."""
        packet = self._next_packet()
        if packet is None:
            if self._drained:
                return False
            # The demuxer stopped early (error/truncation) or its flush packet was
            # already used; drain whatever frames the decoder still holds.
            self._drained = True
            self._ready.extend(_safe_decode(self._stream, None))
            return True
        pts = _packet_pts(packet)
        if pts is not None and (self._fed_pts is None or pts > self._fed_pts):
            self._fed_pts = pts
        self._set_skip_nonref(pts is not None and pts < target_pts)
        self._ready.extend(_safe_decode(self._stream, packet))
        return True

    def _set_skip_nonref(self, skip: bool) -> None:
        # A frame nothing else references, shown before the target, would be decoded
        # only to be thrown away: let the decoder skip it (mostly h264/hevc B-frames).
        # FFmpeg copies skip_frame per submitted packet, so this works with threads.
        if skip != self._skipping:
            self._stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            self._skipping = skip


def _next_target(t: float, interval_s: float) -> float:
    """Smallest multiple of interval_s strictly after t (multiples avoid drift)."""
    return (math.floor((t + _EPS_S) / interval_s) + 1) * interval_s


def _sample_decoded(
    sampler: _Sampler, interval_s: float, duration: float | None
) -> Iterator[tuple[float, _AvFrame]]:
    """(t, frame) pairs, one per target, strictly increasing in t."""
    target = 0.0
    last_t = -math.inf
    while duration is None or target < duration:
        sampler.reposition(target)
        found = sampler.next_at_or_after(target)
        if found is None:
            # The stream ended before the target (duration headers round up); the
            # final frame still stands for the tail if it is not too close.
            if sampler.last and sampler.last[0] > last_t + interval_s / 2:
                yield sampler.last
            return
        yield found
        last_t = found[0]
        target = _next_target(last_t, interval_s)


def sample_frames(
    path: Path,
    interval_s: float,
    *,
    min_long_side: int = 0,
    max_frames: int = 10_000,
    threads: int = 2,
) -> Iterator[Frame]:
    """One frame about every interval_s seconds (t = 0, interval, 2*interval, ...).

    For each target time the first frame at or after it is returned, found by seeking
    (see the module docstring), never by decoding the whole file when the container
    lets us skip. Frames are BGR, upright, scaled so the long side is min_long_side
    (0 or larger than the video: full size). Errors surface on the first ``next()``:
    VideoError when the file cannot be opened, has no video or yields no frame.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    with _open(path) as container:
        stream = _video_stream(container, threads)
        sar = _sar(stream)
        sampler = _Sampler(container, stream)
        try:
            yield from _convert(
                _sample_decoded(sampler, interval_s, _duration_s(container, stream)),
                sar,
                min_long_side,
                max_frames,
            )
        finally:
            sampler.close()


def _convert(
    decoded: Iterator[tuple[float, _AvFrame]], sar: Fraction, min_long_side: int, limit: int
) -> Iterator[Frame]:
    if limit <= 0:
        return
    count = 0
    for t, frame in decoded:
        try:
            image = _to_bgr(frame, sar, min_long_side)
        except (av.FFmpegError, ValueError) as exc:
            log.debug("skipping unconvertible frame at %.3fs: %s", t, _reason(exc))
            continue
        yield Frame(t=t, image=image)
        count += 1
        if count >= limit:  # checked after yielding so no extra target is decoded
            return
    if count == 0:
        raise VideoError("no decodable frame")
