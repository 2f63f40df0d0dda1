"""Images and videos in, bounded PIL images out.

Every stage loads media through this module so that the same limits and the same resizing rules apply in SFT
rendering, rollouts, eval and the server:

* images come from a path, raw bytes, a base64 string or data URL, or a PIL image;
* videos come from a path or raw bytes and are decoded with decord, falling back to PyAV;
* every image the model sees is resized to a pixel budget whose sides are multiples of the vision patch size
  times the merge size (the Qwen-VL ``smart_resize`` rule), so the processor never resizes again;
* decoded video frames are cached per clip, so ``select_frames`` and the second order of a position swap never
  decode the clip again.

A bad file raises :class:`MediaError` naming the file and the problem; nothing here guesses.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import logging
import math
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

ImageSource = str | os.PathLike | bytes | Image.Image
VideoSource = "str | os.PathLike | bytes | VideoClip"


class MediaError(ValueError):
    """A media input that cannot be used; the message names the input and what to fix."""


@dataclass(frozen=True)
class MediaLimits:
    """Hard limits applied before any pixel is decoded (decompression-bomb guard) and after."""

    max_image_pixels: int = 40_000_000
    max_image_bytes: int = 50 * 1024 * 1024
    image_formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
    max_video_seconds: float = 600.0
    max_video_frames: int = 36_000
    max_video_bytes: int = 1024 * 1024 * 1024
    max_frame_pixels: int = 8_294_400  # 4K


DEFAULT_LIMITS = MediaLimits()


# --------------------------------------------------------------------------------------------------------------------
# Sizing


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The Qwen-VL resize rule: sides are multiples of ``factor`` and the area lies in ``[min_pixels, max_pixels]``.

    The aspect ratio is kept as closely as the rounding allows. ``factor`` is patch_size * merge_size (28 for
    Qwen2.5-VL, 32 for Qwen3-VL); one visual token covers ``factor x factor`` pixels.
    """
    from qwen_vl_utils.vision_process import smart_resize as qwen_smart_resize  # noqa: PLC0415

    if height <= 0 or width <= 0:
        raise MediaError(f"image has an empty side ({width}x{height})")
    if max(height, width) / min(height, width) > 200:
        raise MediaError(f"aspect ratio {max(height, width) / min(height, width):.0f}:1 is above 200:1")
    # qwen-vl-utils' own rule, as real checkpoints were trained with it; a side it floors to 0 (a very thin image
    # under a small budget) is kept at one cell so the processor gets a valid grid.
    h_bar, w_bar = qwen_smart_resize(height, width, factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return max(factor, h_bar), max(factor, w_bar)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as qwen-vl-utils makes it: transparency is composited on white (``convert`` would drop the alpha channel
    and show whatever colour the transparent pixels hold, often black)."""
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


@dataclass(frozen=True)
class PixelBudget:
    """Pixels allowed for one image the model sees; ``factor`` is patch_size * merge_size of the vision tower."""

    min_pixels: int
    max_pixels: int
    factor: int = 28

    def __post_init__(self) -> None:
        if self.factor <= 0 or self.min_pixels <= 0 or self.max_pixels < self.min_pixels:
            raise ValueError(f"invalid PixelBudget {self}: need 0 < min_pixels <= max_pixels and factor > 0")

    def with_factor(self, factor: int) -> PixelBudget:
        """The same pixel limits for a vision tower with another patch*merge factor."""
        return PixelBudget(self.min_pixels, self.max_pixels, factor)

    def fit(self, image: Image.Image) -> Image.Image:
        """Resize ``image`` to this budget (no-op when it already conforms)."""
        h, w = smart_resize(image.height, image.width, self.factor, self.min_pixels, self.max_pixels)
        if (w, h) == image.size:
            return image
        return image.resize((w, h), Image.Resampling.BICUBIC)

    def tokens(self, image: Image.Image) -> int:
        """Visual tokens the image will take after :meth:`fit` (one token per ``factor x factor`` cell)."""
        h, w = smart_resize(image.height, image.width, self.factor, self.min_pixels, self.max_pixels)
        return (h // self.factor) * (w // self.factor)


# --------------------------------------------------------------------------------------------------------------------
# Images


def describe_source(source: object) -> str:
    """A short, safe name for a media source to put in error messages and records."""
    if isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if s.startswith("data:"):
            return f"<data URL, {len(s)} chars>"
        if len(s) > 200 and "/" not in s[:200]:
            return f"<base64 string, {len(s)} chars>"
        return s
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.width}x{source.height}>"
    if isinstance(source, VideoClip):
        return f"<{source.num_frames} frames, {source.width}x{source.height}>"
    return f"<{type(source).__name__}>"


def decode_base64(data: str, what: str = "input") -> bytes:
    """Decode a base64 string or ``data:<mime>;base64,...`` URL; raises MediaError with the reason."""
    payload = data
    if data.startswith("data:"):
        header, sep, payload = data.partition(",")
        if not sep or ";base64" not in header:
            raise MediaError(f"{what}: data URL must look like 'data:image/png;base64,<payload>'")
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{what}: invalid base64 ({exc})") from None


def _looks_like_base64(s: str) -> bool:
    return s.startswith("data:") or (len(s) > 256 and not os.path.exists(s[:4096]) and "/" not in s[:64])


def load_image(source: ImageSource, limits: MediaLimits = DEFAULT_LIMITS) -> Image.Image:
    """Load an image as RGB, enforcing format and size limits before decoding the pixels.

    ``source`` is a path, raw bytes, a base64 string / data URL, or a PIL image. Raises :class:`MediaError`
    naming the source on a missing, corrupt, truncated, oversized or disallowed file.
    """
    name = describe_source(source)
    if isinstance(source, Image.Image):
        image = source
        if image.width * image.height > limits.max_image_pixels:
            raise MediaError(f"{name}: {image.width * image.height} pixels, above max_image_pixels")
        return to_rgb(image)
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if _looks_like_base64(s):
            data = decode_base64(s, name)
        else:
            path = Path(s)
            if not path.is_file():
                raise MediaError(f"{name}: no such image file")
            size = path.stat().st_size
            if size > limits.max_image_bytes:
                raise MediaError(f"{name}: {size} bytes, above max_image_bytes={limits.max_image_bytes}")
            data = path.read_bytes()
    else:
        raise MediaError(f"unsupported image source type {type(source).__name__}; give a path, bytes, base64 or PIL")
    if len(data) > limits.max_image_bytes:
        raise MediaError(f"{name}: {len(data)} bytes, above max_image_bytes={limits.max_image_bytes}")
    if not data:
        raise MediaError(f"{name}: empty image data")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise MediaError(f"{name}: not a recognised image (corrupt file or unsupported format)") from None
    except Image.DecompressionBombError as exc:
        raise MediaError(f"{name}: above max_image_pixels, refused as a decompression bomb ({exc})") from None
    if image.format not in limits.image_formats:
        raise MediaError(f"{name}: format {image.format} not allowed (allowed: {', '.join(limits.image_formats)})")
    # The header gives the size before any pixel is decoded: refuse bombs here, not after allocating them.
    pixels = image.width * image.height
    if pixels > limits.max_image_pixels:
        raise MediaError(
            f"{name}: {image.width}x{image.height} = {pixels} pixels, above max_image_pixels={limits.max_image_pixels}"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{name}: corrupt or truncated image data ({exc})") from None
    return to_rgb(image)


def image_to_data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    mime = "jpeg" if fmt.upper() == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


# --------------------------------------------------------------------------------------------------------------------
# Videos


FRAME_RULES = ("qwen", "centre")


def sample_frame_indices(
    num_frames: int,
    n: int | None = None,
    fps: float | None = None,
    sample_fps: float | None = None,
    rule: str = "centre",
):
    """Indices of ``n`` frames spread evenly over the whole clip.

    Give ``n`` (a frame count) or ``sample_fps`` (frames per second, needs the clip's ``fps``). ``rule``:

    * ``"qwen"``: qwen-vl-utils' rule, ``round(linspace(0, num_frames - 1, n))``: the first and last frames included,
      as the real checkpoints saw video in training;
    * ``"centre"``: the centre of each of ``n`` equal segments (the synthetic world places its defects by this rule).
    """
    if rule not in FRAME_RULES:
        raise ValueError(f"frame rule must be one of {FRAME_RULES}, not {rule!r}")
    if num_frames <= 0:
        raise MediaError("video has no frames")
    if n is None:
        if sample_fps is None or fps is None:
            raise ValueError("give n, or sample_fps together with the clip's fps")
        n = max(1, round(num_frames / fps * sample_fps))
    n = max(1, min(int(n), num_frames))
    if rule == "qwen":
        return [int(i) for i in np.linspace(0, num_frames - 1, n).round()]
    step = num_frames / n
    return [min(num_frames - 1, int(step * (i + 0.5))) for i in range(n)]


@dataclass
class VideoClip:
    """A decoded-on-demand video. Frames are cached after the first decode (see :func:`open_video`)."""

    name: str
    num_frames: int
    fps: float
    width: int
    height: int
    backend: str
    _data: bytes | None = field(default=None, repr=False)
    _path: str | None = field(default=None, repr=False)
    _frames: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    decode_calls: int = 0

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0

    def timestamp(self, index: int) -> float:
        return index / self.fps if self.fps > 0 else 0.0

    def index_at(self, seconds: float) -> int:
        return min(self.num_frames - 1, max(0, int(round(seconds * self.fps))))

    def frames(self, indices: list[int]) -> list[Image.Image]:
        """RGB frames at ``indices`` (full resolution); decodes only the ones not cached yet."""
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise MediaError(f"{self.name}: frame indices {bad} out of range 0..{self.num_frames - 1}")
        with self._lock:
            missing = sorted({i for i in indices if i not in self._frames})
            if missing:
                self.decode_calls += 1
                decoded = _decode_frames(self, missing)
                self._frames.update(decoded)
            return [Image.fromarray(self._frames[i]) for i in indices]


def _source_bytes_or_path(source: VideoSource, limits: MediaLimits) -> tuple[str, bytes | None, str | None]:
    name = describe_source(source)
    if isinstance(source, bytes):
        if len(source) > limits.max_video_bytes:
            raise MediaError(f"{name}: above max_video_bytes={limits.max_video_bytes}")
        if not source:
            raise MediaError(f"{name}: empty video data")
        return name, source, None
    s = os.fspath(source)
    if _looks_like_base64(s):
        return name, decode_base64(s, name), None
    path = Path(s)
    if not path.is_file():
        raise MediaError(f"{name}: no such video file")
    if path.stat().st_size == 0:
        raise MediaError(f"{name}: empty video file")
    if path.stat().st_size > limits.max_video_bytes:
        raise MediaError(f"{name}: above max_video_bytes={limits.max_video_bytes}")
    return name, None, str(path)


def _probe_decord(data: bytes | None, path: str | None):
    import decord  # noqa: PLC0415 - optional at import time, required here

    reader = decord.VideoReader(path if path else io.BytesIO(data), num_threads=1)
    first = reader[0].asnumpy()
    return len(reader), float(reader.get_avg_fps()), first.shape[1], first.shape[0]


def _probe_pyav(data: bytes | None, path: str | None):
    import av  # noqa: PLC0415

    with av.open(path if path else io.BytesIO(data)) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        # Frame counts in headers are often missing or wrong; counting packets of the stream is exact and cheap.
        count = 0
        width = height = 0
        for frame in container.decode(stream):
            if count == 0:
                width, height = frame.width, frame.height
            count += 1
        if count == 0:
            raise MediaError("no decodable frames")
        return count, fps, width, height


def _decode_frames(clip: VideoClip, indices: list[int]) -> dict[int, np.ndarray]:
    if clip.backend == "decord":
        import decord  # noqa: PLC0415

        reader = decord.VideoReader(clip._path if clip._path else io.BytesIO(clip._data), num_threads=1)
        batch = reader.get_batch(indices).asnumpy()
        return {i: batch[k] for k, i in enumerate(indices)}
    import av  # noqa: PLC0415

    wanted = set(indices)
    out: dict[int, np.ndarray] = {}
    with av.open(clip._path if clip._path else io.BytesIO(clip._data)) as container:
        for k, frame in enumerate(container.decode(container.streams.video[0])):
            if k in wanted:
                out[k] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
    if len(out) != len(wanted):
        raise MediaError(f"{clip.name}: could not decode frames {sorted(wanted - set(out))} (truncated file?)")
    return out


class _ClipCache:
    """A small LRU of opened clips keyed by content identity, shared by every trajectory in the process."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._clips: OrderedDict[str, VideoClip] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> VideoClip | None:
        with self._lock:
            clip = self._clips.get(key)
            if clip is not None:
                self._clips.move_to_end(key)
            return clip

    def put(self, key: str, clip: VideoClip) -> None:
        with self._lock:
            self._clips[key] = clip
            self._clips.move_to_end(key)
            while len(self._clips) > self.capacity:
                self._clips.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._clips.clear()


CLIP_CACHE = _ClipCache()


def _cache_key(data: bytes | None, path: str | None) -> str:
    if path is not None:
        st = os.stat(path)
        return f"path:{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
    return "sha256:" + hashlib.sha256(data or b"").hexdigest()


def open_video(source: VideoSource, limits: MediaLimits = DEFAULT_LIMITS, backend: str = "auto") -> VideoClip:
    """Open a video and read its metadata; frames are decoded lazily by :meth:`VideoClip.frames`.

    ``backend`` is ``"auto"`` (decord, then PyAV on failure), ``"decord"`` or ``"pyav"``. The clip object is
    cached by content, so opening the same file again (the other order of a swap, a later tool call) reuses
    the frames already decoded.
    """
    if isinstance(source, VideoClip):  # already decoded (frames a client sent as images)
        _check_video_limits(source, limits)
        return source
    name, data, path = _source_bytes_or_path(source, limits)
    key = _cache_key(data, path) + f":{backend}"
    cached = CLIP_CACHE.get(key)
    if cached is not None:
        _check_video_limits(cached, limits)
        return cached
    backends = ["decord", "pyav"] if backend == "auto" else [backend]
    errors = []
    for b in backends:
        try:
            probe = _probe_decord if b == "decord" else _probe_pyav
            num_frames, fps, width, height = probe(data, path)
            break
        except ImportError as exc:
            errors.append(f"{b}: not installed ({exc})")
        except MediaError as exc:
            errors.append(f"{b}: {exc}")
        except Exception as exc:  # decoders raise many types on corrupt input
            errors.append(f"{b}: {type(exc).__name__}: {exc}")
    else:
        raise MediaError(f"{name}: cannot decode video ({'; '.join(errors)})")
    if fps <= 0 or not math.isfinite(fps):
        raise MediaError(f"{name}: video reports no frame rate")
    clip = VideoClip(name=name, num_frames=num_frames, fps=fps, width=width, height=height, backend=b)
    clip._data, clip._path = data, path
    _check_video_limits(clip, limits)
    CLIP_CACHE.put(key, clip)
    logger.debug("opened %s with %s: %d frames at %.2f fps", name, b, num_frames, fps)
    return clip


def sniff_video(head: bytes) -> str | None:
    """The container a file's first bytes announce (mp4/mov, matroska/webm, avi, flv, mpeg-ps/ts, ogg, asf), or
    None: a text file or an image passed as a video is refused before a decoder prints its own errors."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg-ps"
    if head[:1] == b"\x47" and (len(head) < 189 or head[188:189] == b"\x47"):
        return "mpeg-ts"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x30\x26\xb2\x75"):
        return "asf"
    return None


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native decoders (ffmpeg, decord) write straight to file descriptor 2. For single-threaded
    command-line checks only: the redirect is process-wide."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_image_file(path: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS) -> None:
    """Raise :class:`MediaError` unless ``path`` is an image the engine can read."""
    load_image(Path(path), limits)


def check_video_file(path: str | os.PathLike, limits: MediaLimits = DEFAULT_LIMITS) -> None:
    """Raise :class:`MediaError` unless ``path`` is a video the engine can decode (frames and all), quietly."""
    path = Path(path)
    if not path.is_file():
        raise MediaError("no such video file")
    with path.open("rb") as f:
        head = f.read(256)
    if not head:
        raise MediaError("empty file")
    if sniff_video(head) is None:
        raise MediaError("not a video file (no MP4, WebM/MKV, AVI, FLV, MPEG, Ogg or ASF header)")
    with quiet_native_stderr():
        clip = open_video(str(path), limits)
        clip.frames([0])


def clip_from_frames(frames: list[Image.Image], fps: float = 1.0, name: str = "frames") -> VideoClip:
    """A clip made of frames already decoded: a video that a client sent as a list of images (the reward clients
    of Pref-GRPO and UnifiedReward sample 8 frames per video and send them as image parts). ``fps`` sets the
    timestamps the judge is shown; the frames' own spacing in the source is unknown."""
    if not frames:
        raise MediaError(f"{name}: a video needs at least one frame")
    rgb = [np.asarray(to_rgb(f)) for f in frames]
    h, w = rgb[0].shape[:2]
    if any(a.shape[:2] != (h, w) for a in rgb):
        rgb = [np.asarray(to_rgb(f).resize((w, h))) for f in frames]
    clip = VideoClip(name=name, num_frames=len(rgb), fps=fps, width=w, height=h, backend="frames")
    clip._frames = dict(enumerate(rgb))
    return clip


def _check_video_limits(clip: VideoClip, limits: MediaLimits) -> None:
    if clip.num_frames > limits.max_video_frames:
        raise MediaError(f"{clip.name}: {clip.num_frames} frames, above max_video_frames={limits.max_video_frames}")
    if clip.duration > limits.max_video_seconds:
        raise MediaError(
            f"{clip.name}: {clip.duration:.1f} s long, above max_video_seconds={limits.max_video_seconds}"
        )
    if clip.width * clip.height > limits.max_frame_pixels:
        raise MediaError(
            f"{clip.name}: frames of {clip.width}x{clip.height}, above max_frame_pixels={limits.max_frame_pixels}"
        )


def save_video(frames: list[np.ndarray] | list[Image.Image], path: str | os.PathLike, fps: float = 8.0) -> None:
    """Write RGB frames as an H.264 MP4 (PyAV), for tests and the synthetic world."""
    import av  # noqa: PLC0415

    arrays = [np.asarray(f.convert("RGB")) if isinstance(f, Image.Image) else f for f in frames]
    h, w = arrays[0].shape[:2]
    tmp = f"{os.fspath(path)}.tmp.mp4"
    with av.open(tmp, mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for arr in arrays:
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(arr[: stream.height, : stream.width]), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
