"""The FastAPI application: routes, authentication and error shapes.

Authentication is a bearer token per operator (``Authorization: Bearer <token>``); an operator
acts only on themself and their own calls. Errors are JSON: ``{"errors": [{"field": ...,
"reason": ...}]}`` for bad input (422) and ``{"error": ...}`` otherwise.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at run
# time, and the `Me` dependency below is local to create_app().

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .control import Control, ControlError, Forbidden
from .schemas import DispositionIn, OperatorStatus, OrderCard, PauseIn, Principal, TransferIn

MAX_BODY_BYTES = 64 * 1024
_FIELD_PREFIX = re.compile(r"^(?:Value error, )?([a-z_]+): (.+)$")

bearer = HTTPBearer(auto_error=False)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        reason = str(err.get("msg", "invalid"))
        m = _FIELD_PREFIX.match(reason)
        if m and not loc:
            loc, reason = [m.group(1)], m.group(2)
        out.append({"field": ".".join(loc) or "body", "reason": reason})
    return out


def create_app(
    control: Control, *, metrics: Callable[[], tuple[bytes, str]] | None = None
) -> FastAPI:
    """Build the app around `control`; `metrics` renders the Prometheus exposition."""
    app = FastAPI(
        title="obzvon", version="1", docs_url="/api/docs", openapi_url="/api/openapi.json"
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                {"errors": [{"field": "body", "reason": f"larger than {MAX_BODY_BYTES} bytes"}]},
                status_code=413,
            )
        response: Response = await call_next(request)
        return response

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"errors": _validation_errors(exc)}, status_code=422)

    @app.exception_handler(ControlError)
    async def on_control_error(_: Request, exc: ControlError) -> JSONResponse:
        body: dict[str, Any] = {"error": str(exc)}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status)

    # async: FastAPI runs a plain function dependency on a worker thread, a hop per request
    async def principal(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        who = control.authenticate(creds.credentials) if creds else None
        if who is None:
            raise _Unauthorized()
        return who

    @app.exception_handler(_Unauthorized)
    async def on_unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"error": "missing or invalid bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    Me = Annotated[Principal, Depends(principal)]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if metrics is not None:
        render = metrics

        @app.get("/metrics", include_in_schema=False)
        async def prometheus() -> Response:
            body, content_type = render()
            return PlainTextResponse(body, media_type=content_type)

    @app.get("/api/operators/me")
    async def me(who: Me) -> OperatorStatus:
        return control.operator_status(who.id)

    @app.post("/api/operators/me/login")
    async def login(who: Me) -> OperatorStatus:
        return await control.operator_action(who.id, "login")

    @app.post("/api/operators/me/ready")
    async def ready(who: Me) -> OperatorStatus:
        return await control.operator_action(who.id, "ready")

    @app.post("/api/operators/me/pause")
    async def pause(who: Me, body: PauseIn | None = None) -> OperatorStatus:
        reason = body.reason if body else "break"
        return await control.operator_action(who.id, "pause", reason=reason)

    @app.post("/api/operators/me/logout")
    async def logout(who: Me) -> OperatorStatus:
        return await control.operator_action(who.id, "logout")

    @app.get("/api/operators/me/call")
    async def current_call(who: Me) -> OrderCard | None:
        return await control.current_call(who.id)

    @app.post("/api/calls/{call_id}/disposition", status_code=202)
    async def disposition(call_id: str, body: DispositionIn, who: Me) -> dict[str, str]:
        if len(call_id) > 64:
            raise Forbidden("no such call of yours", field="call_id")
        await control.dispose(who.id, call_id, body)
        return {"status": "accepted"}

    @app.post("/api/calls/{call_id}/transfer", status_code=202)
    async def transfer(call_id: str, body: TransferIn, who: Me) -> dict[str, str]:
        if len(call_id) > 64:
            raise Forbidden("no such call of yours", field="call_id")
        await control.transfer(who.id, call_id, body)
        return {"status": "accepted"}

    @app.post("/api/calls/{call_id}/transfer/{decision}", status_code=202)
    async def transfer_decision(
        call_id: str, decision: Literal["complete", "cancel"], who: Me
    ) -> dict[str, str]:
        """An attended transfer: hand the customer to the colleague, or take them back."""
        if len(call_id) > 64:
            raise Forbidden("no such call of yours", field="call_id")
        await control.decide_transfer(who.id, call_id, decision == "complete")
        return {"status": "accepted"}

    return app


class _Unauthorized(Exception):
    pass
