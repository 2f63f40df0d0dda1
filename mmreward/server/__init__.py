"""The judge server: ``mmreward serve`` (see :mod:`mmreward.server.app` for the API)."""

from __future__ import annotations

from mmreward.server.app import create_app
from mmreward.server.backend import BackendSettings, build_judge
from mmreward.server.settings import RequestLimits, ServerSettings

__all__ = [
    "BackgroundServer",
    "BackendSettings",
    "RequestLimits",
    "ServerSettings",
    "build_judge",
    "bind_socket",
    "create_app",
    "serve",
]


def bind_socket(host: str, port: int):
    """The listening socket, bound before the model loads so a port in use is said at once, naming the flag."""
    import socket  # noqa: PLC0415

    from mmreward.errors import InputError  # noqa: PLC0415

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(
            f"--host {host}: cannot resolve it ({exc.strerror}); give an address such as 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); choose another --port, or stop the "
            "process that holds it"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(judge, settings: ServerSettings, log_level: str = "info", sock=None) -> None:
    """Run the API with uvicorn until SIGINT/SIGTERM; in-flight requests finish first (graceful shutdown).
    ``sock``: a socket from :func:`bind_socket` (default: bind ``settings.host:port`` here)."""
    import uvicorn  # noqa: PLC0415

    app = create_app(judge, settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
        server_header=False,
        limit_concurrency=settings.max_queue + 64,  # beyond this uvicorn itself answers 503
    )
    uvicorn.Server(config).run(sockets=[sock or bind_socket(settings.host, settings.port)])


class BackgroundServer:
    """Run the API in a background thread on loopback (tests, benchmarks, the pipeline's smoke check)::

        with BackgroundServer(judge, ServerSettings(port=0)) as server:
            httpx.get(server.url + "/health")

    ``port=0`` picks a free port. Leaving the block shuts down gracefully (in-flight requests finish).
    """

    def __init__(self, judge, settings: ServerSettings | None = None, log_level: str = "warning") -> None:
        import uvicorn  # noqa: PLC0415

        self.settings = settings or ServerSettings(port=0)
        self.app = create_app(judge, self.settings)
        config = uvicorn.Config(
            self.app,
            host=self.settings.host,
            port=self.settings.port,
            log_level=log_level,
            timeout_graceful_shutdown=int(self.settings.graceful_shutdown_s),
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = None

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BackgroundServer:
        import threading  # noqa: PLC0415
        import time  # noqa: PLC0415

        self.thread = threading.Thread(target=self.server.run, name="mmreward-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the judge server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=self.settings.graceful_shutdown_s + 10)
