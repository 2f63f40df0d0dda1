"""Server settings: where it listens, how it batches, and the limits every request is held to."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmreward.media import MediaLimits


@dataclass(frozen=True)
class RequestLimits:
    """Hard limits per request. A request over any of them gets a 4xx JSON error naming the limit."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_images: int = 64  # images in one request (candidates, question media, chat image parts and video frames)
    max_image_pixels: int = 16_777_216  # 16 MP: checked from the header before decoding (decompression bombs)
    max_image_bytes: int = 20 * 1024 * 1024
    max_videos: int = 8
    max_video_bytes: int = 48 * 1024 * 1024
    max_video_seconds: float = 120.0
    max_video_frames: int = 7200
    max_frame_pixels: int = 8_294_400
    max_text_chars: int = 32_000  # prompt, each answer candidate, each chat message
    max_n: int = 8  # chat `n`, judge `votes`
    max_tokens: int = 4096  # per assistant turn (/v1/judge, /v1/rewards)
    max_completion_tokens: int = 8192  # chat's max_tokens: over all the turns of one judgment
    max_items: int = 1024  # items in one /v1/rewards call, over all its groups (an RL batch)

    def media_limits(self) -> MediaLimits:
        return MediaLimits(
            max_image_pixels=self.max_image_pixels,
            max_image_bytes=self.max_image_bytes,
            max_video_seconds=self.max_video_seconds,
            max_video_frames=self.max_video_frames,
            max_video_bytes=self.max_video_bytes,
            max_frame_pixels=self.max_frame_pixels,
        )


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"  # loopback by default; binding elsewhere is an explicit choice
    port: int = 8000
    model_name: str = "mmreward-judge"  # the id /v1/models lists and clients pass as `model`
    # More served names, each with the reply profile its clients expect (None: mmreward's own, or what the
    # request's text asks for), e.g. {"UnifiedReward-7b-v1.5": "final_score", "UnifiedReward": None}.
    aliases: dict[str, str | None] = field(default_factory=dict)
    # Served names whose chat requests go to the vllm backend untouched (someone else's judge behind vLLM).
    passthrough: list[str] = field(default_factory=list)
    token: str | None = None  # bearer token; when set every endpoint but /health requires it
    max_batch: int = 16  # judging tasks gathered into one engine call (1 turns batching off)
    batch_wait_ms: float = 30.0  # the worker gathers a batch until no request has arrived for this long
    batch_max_wait_ms: float = 200.0  # ... or this long after the first (see mmreward.server.batcher)
    # CPU intra-op threads of the worker thread that runs the model (None: torch's default). `mmreward serve` sets
    # it and keeps its main thread at one: under OpenMP a second thread with its own pool of workers makes every
    # op in the model's thread pay a wake-up (the judge ran 1.4x slower in a worker thread than on the main one).
    engine_threads: int | None = None
    max_queue: int = 256  # queued requests; beyond it new ones get 503 with Retry-After
    request_timeout_s: float = 300.0  # a request not answered by then gets 504 (and is dropped from the queue)
    graceful_shutdown_s: float = 30.0  # on shutdown, in-flight requests get this long to finish
    allow_local_roots: list[str] = field(default_factory=list)  # folders whose files requests may name
    allow_url_hosts: list[str] = field(default_factory=list)  # hosts whose http(s) URLs the server may fetch
    allow_private_urls: bool = False  # even for allowed hosts, refuse loopback/private addresses unless set
    url_timeout_s: float = 10.0
    limits: RequestLimits = field(default_factory=RequestLimits)
    docs: bool = True  # the OpenAPI schema at /openapi.json, its pages at /docs and /redoc (no token needed)

    def __post_init__(self) -> None:
        if self.engine_threads is not None and self.engine_threads < 1:
            raise ValueError("engine_threads must be at least 1")
        if self.max_batch < 1 or self.max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        if self.batch_wait_ms < 0 or self.batch_max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("batch_wait_ms and batch_max_wait_ms must be >= 0 and request_timeout_s > 0")
        from mmreward.server.replies import REPLY_FORMATS  # noqa: PLC0415

        bad = {n: p for n, p in self.aliases.items() if p is not None and p not in REPLY_FORMATS}
        if bad:
            raise ValueError(f"unknown reply profiles {bad}; known: {sorted(REPLY_FORMATS)}")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("the bearer token must be at least 8 characters")

    @property
    def served_names(self) -> dict[str, str | None]:
        names = {self.model_name: self.aliases.get(self.model_name), **self.aliases}
        return {**names, **{n: None for n in self.passthrough}}
