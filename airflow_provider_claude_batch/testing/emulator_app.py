"""The emulator over HTTP: the API's routes (Message Batches, ``count_tokens``, models, the token
exchange) and the ``/_emulator/*`` control plane, as a FastAPI application.

Invariants:

* Every answer of an API route carries its own ``request-id`` header, failures included, and
  every error has the API's shape (``{"type": "error", "error": {"type", "message"},
  "request_id"}``), also for routes and methods the API does not have and for malformed
  queries: the SDK raises its typed errors, never a parse failure.
* An API call takes the same steps in order (:func:`_serve`): counted in ``calls``, its
  ``base_url`` noted (``results_url`` points back at whatever address the client used),
  authenticated (an API key, or a federated access token with the OAuth beta; a 401 counts in
  ``auth_failures``), the configured latency, a fault taken, the work, the state file saved.
* A fault delays and/or fails the answer before the work; with ``after_commit``, after it: the
  ambiguous failure that makes a blind retry of a create bill twice.
* Results are streamed from the rendered file, one ``Range`` honoured (206) while
  ``results_ranges`` is on; a drop fault breaks the connection after ``drop_after_bytes``.
* The token exchange needs no API key (the identity token is the credential). Control
  endpoints have no auth, latency or faults, and are not counted; a change they cannot make
  (a body that is not JSON, an unknown setting, fault field or outcome) is a 400 saying why.
  ``GET /_emulator/config`` shows the settings but never a key or a trusted identity token
  (it counts them).
* Handlers are module-level and keep no state: each gets its :class:`Emulator` from the app
  (``app.state.emulator``, set by :func:`create_app`), so apps in one process share nothing.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, fields
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing.emulator_requests import ERROR_TYPES, EmulatorHTTPError, count_input_tokens
from airflow_provider_claude_batch.testing.emulator_results import EMULATOR_TAG
from airflow_provider_claude_batch.testing.emulator_state import Emulator, EmulatorConfig, Fault, rfc3339
from airflow_provider_claude_batch.testing.federation import (
    OAUTH_API_BETA,
    TOKEN_PREFIX,
    FederationError,
    FederationRule,
)
from airflow_provider_claude_batch.testing.models_catalog import find_model, models_page
from airflow_provider_claude_batch.testing.pagination import cursor_page, list_body

#: ``Range: bytes=START-`` or ``bytes=START-END`` (one range: what a resuming download sends).
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
#: Bytes read from a rendered results file per body chunk.
RESULTS_CHUNK_BYTES = 1 << 20

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

#: The work of an API call: the workspace it acts in and the fault it took -> its answer (JSON
#: data, or a whole ``Response``).
Operation = Callable[[str | None, Fault | None], Any]


def create_app(emulator: Emulator) -> FastAPI:
    """The FastAPI application serving ``emulator``."""
    app = FastAPI(
        title="Claude Message Batches API emulator",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Routes and methods the API does not have answer in its error shape, not FastAPI's.
        exception_handlers={StarletteHTTPException: _http_error, RequestValidationError: _validation_error},
    )
    app.state.emulator = emulator
    app.include_router(api)
    app.include_router(control)
    return app


def emulator_of(request: Request) -> Emulator:
    """The emulator the app serving ``request`` was created for."""
    emulator: Emulator = request.app.state.emulator
    return emulator


EmulatorDep = Annotated[Emulator, Depends(emulator_of)]

api = APIRouter()
control = APIRouter()


# --------------------------------------------------------------------- the API's routes
@api.post("/v1/messages/batches")
async def create_batch(request: Request, emulator: EmulatorDep) -> Response:
    body = await request.body()
    return await _serve(emulator, "create", request, lambda ws, _fault: emulator.create(body, ws))


@api.post("/v1/messages/count_tokens")
async def count_tokens(request: Request, emulator: EmulatorDep) -> Response:
    body = await request.body()
    return await _serve(emulator, "count_tokens", request, lambda _ws, _fault: count_input_tokens(body))


@api.get("/v1/messages/batches")
async def list_batches(
    request: Request,
    emulator: EmulatorDep,
    limit: int = limits.LIST_PAGE_DEFAULT,
    after_id: str | None = None,
    before_id: str | None = None,
) -> Response:
    return await _serve(emulator, "list", request, lambda ws, _fault: emulator.list(ws, limit, after_id, before_id))


@api.get("/v1/messages/batches/{batch_id}")
async def retrieve_batch(batch_id: str, request: Request, emulator: EmulatorDep) -> Response:
    return await _serve(emulator, "retrieve", request, lambda ws, _fault: emulator.retrieve(batch_id, ws))


@api.post("/v1/messages/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, emulator: EmulatorDep) -> Response:
    return await _serve(emulator, "cancel", request, lambda ws, _fault: emulator.cancel(batch_id, ws))


@api.delete("/v1/messages/batches/{batch_id}")
async def delete_batch(batch_id: str, request: Request, emulator: EmulatorDep) -> Response:
    return await _serve(emulator, "delete", request, lambda ws, _fault: emulator.delete(batch_id, ws))


@api.get("/v1/messages/batches/{batch_id}/results")
async def batch_results(batch_id: str, request: Request, emulator: EmulatorDep) -> Response:
    return await _serve(
        emulator, "results", request, lambda ws, fault: _results_response(emulator, request, batch_id, ws, fault)
    )


@api.get("/v1/models")
async def list_models(
    request: Request, emulator: EmulatorDep, limit: int = 20, after_id: str | None = None, before_id: str | None = None
) -> Response:
    return await _serve(emulator, "models", request, lambda _ws, _fault: _models_page(limit, after_id, before_id))


@api.get("/v1/models/{model_id}")
async def retrieve_model(model_id: str, request: Request, emulator: EmulatorDep) -> Response:
    return await _serve(emulator, "models", request, lambda _ws, _fault: _one_model(model_id))


@api.post("/v1/oauth/token")
async def exchange_token(request: Request, emulator: EmulatorDep) -> Response:
    """Workload identity federation's token exchange (no API key: the assertion is the credential)."""
    emulator.calls["token"] += 1
    headers = {"request-id": _new_request_id()}
    try:
        body = _decoder.decode(await request.body())
    except msgspec.DecodeError:
        body = None
    try:
        answer = emulator.exchange_token(body)
    except FederationError as exc:
        emulator.stats["token_exchange_failures"] += 1
        return JSONResponse(status_code=exc.status, content=exc.body(), headers=headers)
    emulator.stats["token_exchanges"] += 1
    return JSONResponse(content=answer, headers=headers)


# --------------------------------------------------------------------- the Files API (beta)
@api.post("/v1/files")
async def upload_file(request: Request, emulator: EmulatorDep) -> Response:
    form = await request.form()
    upload = form.get("file")
    data = await upload.read() if upload is not None and hasattr(upload, "read") else None

    def store(workspace: str | None, _fault: Fault | None) -> dict[str, Any]:
        _check_files_beta(request)
        if data is None:
            raise EmulatorHTTPError(400, "file: Field required (a multipart file)")
        name = str(getattr(upload, "filename", None) or "upload")
        mime = str(getattr(upload, "content_type", None) or "application/octet-stream")
        return emulator.files.upload(workspace, name, mime, data, emulator.clock.now()).as_json(rfc3339)

    return await _serve(emulator, "files", request, store)


@api.get("/v1/files")
async def list_files(
    request: Request,
    emulator: EmulatorDep,
    limit: int = limits.LIST_PAGE_DEFAULT,
    after_id: str | None = None,
    before_id: str | None = None,
) -> Response:
    def page(workspace: str | None, _fault: Fault | None) -> dict[str, Any]:
        _check_files_beta(request)
        if not 1 <= limit <= limits.LIST_PAGE_MAX:
            raise EmulatorHTTPError(400, f"limit: Input should be between 1 and {limits.LIST_PAGE_MAX}")
        items = emulator.files.list(workspace)
        found, more = cursor_page(items, lambda item: item.id, limit, after_id, before_id)
        return list_body(found, lambda item: item.id, more, lambda item: item.as_json(rfc3339))

    return await _serve(emulator, "files", request, page)


@api.get("/v1/files/{file_id}")
async def file_metadata(file_id: str, request: Request, emulator: EmulatorDep) -> Response:
    def metadata(workspace: str | None, _fault: Fault | None) -> dict[str, Any]:
        _check_files_beta(request)
        return emulator.files.get(file_id, workspace).as_json(rfc3339)

    return await _serve(emulator, "files", request, metadata)


@api.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, request: Request, emulator: EmulatorDep) -> Response:
    def refuse(workspace: str | None, _fault: Fault | None) -> None:
        _check_files_beta(request)
        emulator.files.download(file_id, workspace)

    return await _serve(emulator, "files", request, refuse)


@api.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, request: Request, emulator: EmulatorDep) -> Response:
    def delete(workspace: str | None, _fault: Fault | None) -> dict[str, Any]:
        _check_files_beta(request)
        return emulator.files.delete(file_id, workspace)

    return await _serve(emulator, "files", request, delete)


def _check_files_beta(request: Request) -> None:
    """Every Files API call carries the beta flag, or the API answers 400."""
    flags = {flag.strip() for flag in request.headers.get("anthropic-beta", "").split(",")}
    if limits.FILES_API_BETA not in flags:
        raise EmulatorHTTPError(400, f"The Files API requires the anthropic-beta header {limits.FILES_API_BETA}")


# --------------------------------------------------------------------- the control plane
@control.get("/_emulator/state")
async def control_state(emulator: EmulatorDep) -> dict[str, Any]:
    return emulator.snapshot()


@control.post("/_emulator/faults")
async def control_fault(request: Request, emulator: EmulatorDep) -> Response:
    def inject(body: Any) -> dict[str, Any]:
        return {"injected": emulator.inject(Fault(**body)).endpoint}

    return await _control(request, inject)


@control.post("/_emulator/advance")
async def control_advance(seconds: float, emulator: EmulatorDep) -> dict[str, Any]:
    emulator.advance(seconds)
    return {"now": rfc3339(emulator.clock.now())}


@control.post("/_emulator/outcomes")
async def control_outcomes(request: Request, emulator: EmulatorDep) -> Response:
    def script(body: Any) -> dict[str, Any]:
        emulator.script_outcomes(body)
        return {"ok": True}

    return await _control(request, script)


@control.get("/_emulator/config")
async def control_config_read(emulator: EmulatorDep) -> dict[str, Any]:
    return config_json(emulator.config)


@control.post("/_emulator/config")
async def control_config(request: Request, emulator: EmulatorDep) -> Response:
    def configure(body: Any) -> dict[str, Any]:
        _configure(emulator, body)
        return {"ok": True}

    return await _control(request, configure)


@control.post("/_emulator/reset")
async def control_reset(emulator: EmulatorDep) -> dict[str, Any]:
    emulator.reset()
    return {"ok": True}


async def _control(request: Request, change: Callable[[Any], dict[str, Any]]) -> Response:
    """A change of the emulator from a request's JSON body, and its answer; a 400 saying what
    is wrong when the body is not JSON or not a change the emulator knows."""
    try:
        return JSONResponse(change(await request.json()))
    except (TypeError, ValueError, AttributeError) as exc:
        return JSONResponse(status_code=400, content={"error": f"{type(exc).__name__}: {exc}"})


def config_json(config: EmulatorConfig) -> dict[str, Any]:
    """The settings an emulator runs with, as JSON: every field by name, except that keys and
    trusted identity tokens are counted, not shown, and a processing time that never ends
    (``inf``, which JSON cannot hold) is null."""
    settings = {item.name: getattr(config, item.name) for item in fields(config)}
    settings["api_keys"] = len(config.api_keys)
    rule = config.federation
    settings["federation"] = {**asdict(rule), "trusted_identity_tokens": len(rule.trusted_identity_tokens)}
    if math.isinf(config.processing_seconds):
        settings["processing_seconds"] = None
    if config.reply_chars is not None:
        settings["reply_chars"] = list(config.reply_chars)
    return settings


def _configure(emulator: Emulator, settings: dict[str, Any]) -> None:
    """Set config fields from their JSON values (``reply_chars`` a pair, ``federation`` a rule)."""
    for name, value in settings.items():
        if not hasattr(emulator.config, name):
            raise ValueError(f"unknown emulator setting {name!r}")
        if name == "reply_chars" and value:
            value = tuple(value)
        elif name == "federation":
            value = FederationRule(
                **{**value, "trusted_identity_tokens": frozenset(value.get("trusted_identity_tokens", ()))}
            )
        setattr(emulator.config, name, value)


# --------------------------------------------------------------------- one API call
async def _serve(emulator: Emulator, endpoint: str, request: Request, operation: Operation) -> Response:
    """Answer an API call: count, authenticate, wait, misbehave as a fault says, work, save."""
    emulator.calls[endpoint] += 1
    # results_url must point back at whatever address the client used to reach us.
    emulator.base_url = str(request.base_url).rstrip("/")
    request_id = _new_request_id()  # every answer has its own, failures included
    try:
        workspace = _authenticate(emulator, request)
        emulator.check_batch_rate(endpoint)
        if emulator.config.latency_seconds:
            await asyncio.sleep(emulator.config.latency_seconds)
        fault = emulator.take_fault(endpoint)
        if fault is not None and not fault.after_commit:
            await _misbehave(fault)
        result = operation(workspace, fault)
        emulator.save_state()
        if fault is not None and fault.after_commit:  # the work is done; only the answer is slow or lost
            await _misbehave(fault)
        return _answer(result, request_id)
    except EmulatorHTTPError as exc:
        return _error_response(exc, request_id)


def _new_request_id() -> str:
    return f"req_emu{secrets.token_hex(8)}"


def _authenticate(emulator: Emulator, request: Request) -> str | None:
    """The workspace a request acts in, once its credentials pass (else a 401)."""
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if key is None and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
        if key.startswith(TOKEN_PREFIX):
            return _authenticate_access_token(emulator, request, key)
    if not key:
        emulator.stats["auth_failures"] += 1
        raise EmulatorHTTPError(401, "x-api-key header is required", error_type="authentication_error")
    if key not in emulator.config.api_keys:
        emulator.stats["auth_failures"] += 1
        raise EmulatorHTTPError(401, "invalid x-api-key", error_type="authentication_error")
    if not request.headers.get("anthropic-version"):
        raise EmulatorHTTPError(400, "anthropic-version: header is required")
    return request.headers.get("anthropic-workspace-id")


def _authenticate_access_token(emulator: Emulator, request: Request, token: str) -> str | None:
    """A federated access token acts in the workspace it was minted for, with the OAuth beta."""
    valid, workspace = emulator.tokens.workspace_of(token, emulator.clock.now())
    if not valid:
        emulator.stats["auth_failures"] += 1
        raise EmulatorHTTPError(401, "invalid or expired access token", error_type="authentication_error")
    flags = {flag.strip() for flag in request.headers.get("anthropic-beta", "").split(",")}
    if OAUTH_API_BETA not in flags:
        emulator.stats["auth_failures"] += 1
        raise EmulatorHTTPError(
            401,
            f"OAuth authentication needs the anthropic-beta {OAUTH_API_BETA}",
            error_type="authentication_error",
        )
    if not request.headers.get("anthropic-version"):
        raise EmulatorHTTPError(400, "anthropic-version: header is required")
    emulator.stats["token_requests"] += 1
    return workspace


async def _misbehave(fault: Fault) -> None:
    """What a fault does to an answer: delay it, then fail it when the fault has a status."""
    if fault.delay_seconds:
        await asyncio.sleep(fault.delay_seconds)
    if fault.status is not None:
        error_type = ERROR_TYPES[fault.status]
        message = fault.message or f"{EMULATOR_TAG} injected {error_type}"
        raise EmulatorHTTPError(fault.status, message, error_type=error_type, retry_after=fault.retry_after)


def _answer(result: Any, request_id: str) -> Response:
    """An operation's result as the answer: JSON data encoded, a ``Response`` as it is."""
    if isinstance(result, Response):
        result.headers["request-id"] = request_id
        return result
    return Response(content=_encoder.encode(result), media_type="application/json", headers={"request-id": request_id})


def _error_response(exc: EmulatorHTTPError, request_id: str) -> JSONResponse:
    headers = {"request-id": request_id}
    if exc.retry_after is not None:
        headers["retry-after"] = f"{exc.retry_after:g}"
    return JSONResponse(
        status_code=exc.status,
        content={"type": "error", "error": {"type": exc.error_type, "message": exc.message}, "request_id": request_id},
        headers=headers,
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """A route or method the API does not have, in the API's error shape."""
    error_type = ERROR_TYPES.get(exc.status_code, "invalid_request_error")
    message = f"{exc.detail}: {request.method} {request.url.path}"
    response = _error_response(EmulatorHTTPError(exc.status_code, message, error_type=error_type), _new_request_id())
    if exc.headers:
        response.headers.update(exc.headers)  # e.g. the ``allow`` header of a 405
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A malformed query or path parameter: the API's 400 naming the first one."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body"))
    message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
    return _error_response(EmulatorHTTPError(400, message), _new_request_id())


# --------------------------------------------------------------------- models and results
def _models_page(limit: int, after_id: str | None, before_id: str | None) -> dict[str, Any]:
    if not 1 <= limit <= limits.LIST_PAGE_MAX:
        raise EmulatorHTTPError(400, f"limit: Input should be between 1 and {limits.LIST_PAGE_MAX}")
    return models_page(limit, after_id, before_id)


def _one_model(model_id: str) -> dict[str, Any]:
    found = find_model(model_id)
    if found is None:
        raise EmulatorHTTPError(404, f"model: {model_id}")
    return found


def _results_response(
    emulator: Emulator, request: Request, batch_id: str, workspace: str | None, fault: Fault | None
) -> Response:
    """An ended batch's results file, whole or from one ``Range`` (206)."""
    path, size = emulator.results_file(batch_id, workspace)
    asked = request.headers.get("range") if emulator.config.results_ranges else None
    start, end = _byte_range(asked, size)
    headers = {"content-length": str(end - start)}
    if emulator.config.results_ranges:
        headers["accept-ranges"] = "bytes"
    status = 200
    if asked is not None:
        status = 206
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        emulator.stats["results_ranges"] += 1
    return StreamingResponse(
        _file_chunks(emulator, path, start, end, fault),
        status_code=status,
        media_type="application/binary",
        headers=headers,
    )


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """``[start, end)`` of a results body for a ``Range`` header (the whole file without one)."""
    if header is None:
        return 0, size
    match = _RANGE.match(header.strip())
    if match is None:
        raise EmulatorHTTPError(400, f"range: unsupported Range header {header!r}; use bytes=START- or START-END")
    start = int(match.group(1))
    end = min(size, int(match.group(2)) + 1) if match.group(2) else size
    if start >= size or start >= end:
        raise EmulatorHTTPError(
            416, f"range: {header!r} is outside the {size} bytes of the results", error_type="invalid_request_error"
        )
    return start, end


async def _file_chunks(emulator: Emulator, path: str, start: int, end: int, drop: Fault | None) -> AsyncIterator[bytes]:
    """Bytes ``[start, end)`` of a rendered results file in 1 MiB chunks; with a drop fault,
    the connection breaks after ``drop_after_bytes`` of this response's body."""
    limit = end - start
    if drop is not None and drop.drop_after_bytes is not None:
        limit = min(limit, drop.drop_after_bytes)
    sent = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        while sent < limit:
            data = handle.read(min(RESULTS_CHUNK_BYTES, limit - sent))
            if not data:
                break
            sent += len(data)
            yield data
            await asyncio.sleep(0)
    if sent < end - start:
        emulator.stats["results_dropped"] += 1
        raise ConnectionAbortedError(f"{EMULATOR_TAG} dropped the results connection on purpose")
