"""The OnexTree HTTP API (generate, query, stats, intelligence, health) over the tree engine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bridge_dagster.onextree import (
    InvalidPath,
    InvalidQuery,
    NotADirectory,
    NotAFile,
    RootNotAllowed,
    RootNotFound,
    TreeEngine,
    TreeError,
    TreeIndex,
    query_tree,
)
from bridge_dagster.onextree.query import QueryType
from bridge_dagster.services.envelope import ServiceError, error_response, install_envelope, ok

MAX_PATH_LENGTH = 4096
MAX_QUERY_LENGTH = 1024
MAX_CONTEXT_LENGTH = 20_000
MAX_LIMIT = 1000

# What each engine refusal means over HTTP.
_STATUS_OF: dict[type[TreeError], tuple[int, str]] = {
    RootNotAllowed: (403, "root_not_allowed"),
    RootNotFound: (404, "not_found"),
    NotADirectory: (400, "not_a_directory"),
    NotAFile: (400, "not_a_file"),
    InvalidPath: (400, "invalid_path"),
    InvalidQuery: (400, "invalid_query"),
}


class GenerateRequest(BaseModel):
    project_root: str = Field(min_length=1, max_length=MAX_PATH_LENGTH)


class QueryRequest(BaseModel):
    query: str = Field(max_length=MAX_QUERY_LENGTH)
    query_type: QueryType = "auto"
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)


class IntelligenceRequest(BaseModel):
    """`project_root` is optional: without it an absolute `file_path` finds its own project,
    and anything else uses the tree from the last /generate."""

    context: str = Field(default="", max_length=MAX_CONTEXT_LENGTH)
    file_path: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)
    project_root: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)


def create_onextree_app(
    *,
    allowed_roots: Sequence[Path],
    api_key: str | None = None,
    previous_api_keys: Sequence[str] = (),
) -> FastAPI:
    app = FastAPI(title="OnexTree", description="Project tree intelligence")
    install_envelope(app, api_key, previous_api_keys)
    app.state.engine = TreeEngine(allowed_roots)
    app.state.current = None

    @app.exception_handler(TreeError)
    async def _tree_error(_: Request, exc: TreeError) -> JSONResponse:
        status_code, error = _STATUS_OF.get(type(exc), (400, "tree_error"))
        return error_response(status_code, error, str(exc))

    @app.post("/generate")
    def generate(body: GenerateRequest) -> dict[str, Any]:
        started = time.perf_counter()
        index = app.state.engine.generate(body.project_root)
        elapsed_ms = (time.perf_counter() - started) * 1000
        app.state.current = index
        statistics = index.tree.statistics
        return ok(
            {
                "success": True,
                "project_root": index.root,
                "total_files": statistics.total_files,
                "total_directories": statistics.total_directories,
                "total_size_mb": statistics.total_size_mb,
                "generation_time_ms": round(elapsed_ms, 2),
            },
            message="tree generated",
        )

    @app.post("/query")
    def query(body: QueryRequest) -> dict[str, Any]:
        result = query_tree(_current_tree(app), body.query, body.query_type, body.limit)
        return ok(result.to_dict())

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        index = _current_tree(app)
        return ok(
            {
                "project_root": index.root,
                "generated_at": index.tree.generated_at,
                **index.tree.statistics.to_dict(),
            }
        )

    @app.post("/intelligence")
    def intelligence(body: IntelligenceRequest) -> dict[str, Any]:
        result = app.state.engine.intelligence(
            body.file_path, body.context, body.project_root, current=app.state.current
        )
        return ok(result.to_dict())

    @app.get("/health")
    def health() -> dict[str, Any]:
        current: TreeIndex | None = app.state.current
        return ok(
            {
                "status": "healthy",
                "tree_loaded": current is not None,
                "project_root": current.root if current is not None else None,
            }
        )

    return app


def _current_tree(app: FastAPI) -> TreeIndex:
    index: TreeIndex | None = app.state.current
    if index is None:
        raise ServiceError(
            409, "no_tree", "no project tree is loaded; generate a tree first with POST /generate"
        )
    return index
