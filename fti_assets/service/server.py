"""Run the prediction service under uvicorn (``fti serve`` calls :func:`serve`).

Each uvicorn worker process builds its own app through the factory
``fti_assets.service.app:create_app`` (settings from the FTI_* environment variables): its own
online-store connection, champion model and inference-log files. SIGTERM/SIGINT shut a worker
down gracefully: in-flight requests finish, then the lifespan flushes the inference log.

Run alone: ``python -m fti_assets.service.server --port 8000 --workers 2``.
"""

from __future__ import annotations

import argparse

import uvicorn

APP_FACTORY = "fti_assets.service.app:create_app"


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    *,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until interrupted; ``workers > 1`` starts uvicorn's multiprocess workers.

    Bound to 127.0.0.1 unless told otherwise (``/admin`` needs the FTI_ADMIN_TOKEN bearer
    token, and is disabled without it; still, expose the service only on purpose). The
    access log is off by default (every prediction is in the inference log, and formatting an
    access line costs as much as a third of a prediction).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        # Requests take milliseconds: a few seconds is plenty to finish them on shutdown.
        timeout_graceful_shutdown=10,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the FTI prediction service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
