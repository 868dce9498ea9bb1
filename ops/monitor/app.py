"""The monitor's web app (FastAPI + Jinja2): one page, the JSON endpoints it reads, and /metrics.

    GET /                                   the page (templates/index.html, static/monitor.js)
    GET /api/status                         services, lag per partition, the job's state, dead-letter tally
    GET /api/history                        the samples the charts draw
    GET /api/dead-letters?limit=50&stage=   the newest dead letters, decoded
    GET /api/subjects                       subjects with their versions and schema ids
    GET /api/subjects/{subject}/diff?old=1&new=2   field-by-field diff and BACKWARD verdict
    GET /api/dag-runs                       the newest runs of the DAG
    GET /metrics                            Prometheus text format
    GET /healthz                            200 once a sample is taken (the launcher's readiness probe)
    GET /static/plotly.min.js               plotly's own bundle, from the installed package: nothing from a CDN

A service that is down gives its section an error (503 with `detail`), never
a blank page: the monitor exists to be read while something is broken.
"""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, AsyncIterator

import plotly
from confluent_kafka import KafkaException
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST

from core import dead_letter, names
from core.health import REGISTRY_ERRORS, reason
from core.schema_registry import is_not_found
from core.settings import Settings
from ops.monitor import dead_letters, schemas
from ops.monitor.history import Sampler
from ops.monitor.metrics import exposition
from ops.status.sections import dag_runs

HERE = Path(__file__).resolve().parent
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def create_app(settings: Settings, sampler: Sampler | None = None, start_sampler: bool = True, timeout: float = 5.0) -> FastAPI:
    """The app around one Sampler; `start_sampler=False` lets tests drive `sample_once()` themselves."""
    sampler = sampler or Sampler(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """The sampler thread runs while the server does."""
        if start_sampler:
            sampler.start()
        yield
        if start_sampler:
            sampler.stop()

    app = FastAPI(title="userstream monitor", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.sampler = sampler
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> Response:
        context = {"dag_id": names.DAG_ID, "stages": dead_letter.STAGES, "interval": sampler.interval,
                   "dead_letter_topic": settings.dead_letter_topic, "group": settings.spark_consumer_group}
        return templates.TemplateResponse(request, "index.html", context)

    @app.get("/static/plotly.min.js")
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="application/javascript")

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")  # after plotly's route, which it would shadow

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        body = {"sampled": bool(sampler.latest), "samples": len(sampler.samples), "failure": sampler.failure,
                "version": version("userstream")}
        return JSONResponse(body, status_code=503 if sampler.failure else 200)

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        if not sampler.latest:
            raise HTTPException(503, "no sample taken yet")
        return {**sampler.latest, "failure": sampler.failure}

    @app.get("/api/history")
    def history() -> dict[str, Any]:
        return {"interval": sampler.interval, "samples": sampler.history()}

    @app.get("/api/dead-letters")
    def dead_letter_list(limit: int = Query(50, ge=1, le=500), stage: str | None = None) -> dict[str, Any]:
        try:
            letters = dead_letters.newest(settings, limit=limit, stage=stage or None, timeout=timeout)
        except KafkaException as exc:
            raise HTTPException(503, f"kafka: {reason(exc)}") from exc
        return {"topic": settings.dead_letter_topic, "dead_letters": [d.as_dict() for d in letters]}

    @app.get("/api/subjects")
    def subject_list() -> dict[str, Any]:
        try:
            return {"url": settings.schema_registry_url, "subjects": schemas.subjects(settings, timeout)}
        except REGISTRY_ERRORS as exc:
            raise HTTPException(503, f"registry: {reason(exc)}") from exc

    @app.get("/api/subjects/{subject}/diff")
    def subject_diff(subject: str, old: int = Query(..., ge=1), new: int = Query(..., ge=1)) -> dict[str, Any]:
        try:
            return schemas.diff(settings, subject, old, new, timeout)
        except SchemaRegistryError as exc:
            if is_not_found(exc):
                raise HTTPException(404, f"{subject} has no version {old} or {new}") from exc
            raise HTTPException(503, f"registry: {reason(exc)}") from exc
        except REGISTRY_ERRORS as exc:
            raise HTTPException(503, f"registry: {reason(exc)}") from exc
        except schemas.SchemaDiffError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/api/dag-runs")
    def runs(limit: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
        return dataclasses.asdict(dag_runs(settings, timeout, limit=limit))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(exposition(sampler), media_type=CONTENT_TYPE_LATEST)

    return app
