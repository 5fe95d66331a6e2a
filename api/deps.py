"""Dependencies of the routes: the worker's service and time parameters (ISO or epoch ms).

The dependencies are `async def`: FastAPI runs a plain `def` one in its thread pool, a
hop per dependency and request.
"""

import functools
import hmac
import re
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.ports import QueryService
from core.timefmt import MAX_MS, MIN_MS, parse_time_ms


async def get_service(request: Request) -> QueryService:
    """The service of the worker serving this request."""
    service: QueryService = request.app.state.service
    return service


ServiceDep = Annotated[QueryService, Depends(get_service)]

# Parameters several routes share; the examples show in /docs and lead the schema fuzz
# (tests/unit/test_api_fuzz.py) to names and windows that hold data.
WindowName = Annotated[str, Path(description="a window's name: its WINDOWS spec with : and / "
                                             "as _", examples=["tumble_10s"])]
FirstNamePath = Annotated[str, Path(min_length=1, examples=["Ana"])]
LastNamePath = Annotated[str, Path(min_length=1, examples=["Ruiz"])]
FirstNameQuery = Annotated[str, Query(min_length=1, examples=["Ana"])]
LastNameQuery = Annotated[str, Query(min_length=1, examples=["Ruiz"])]
FirstNameFilter = Annotated[str | None, Query(description="exact match", examples=["Ana"])]
LastNameFilter = Annotated[str | None, Query(description="exact match", examples=["Ruiz"])]
_bearer = HTTPBearer(auto_error=False, description="API_TOKEN, when the worker has one")


async def require_token(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With API_TOKEN set, `Authorization: Bearer <token>` (compared in constant time). A
    header's bytes reach the app decoded as Latin-1 (ASGI); a non-ASCII token matches sent
    as UTF-8 (curl, browsers' fetch) or as Latin-1."""
    expected = service.settings.api_token
    if expected is None:
        return
    given = b"" if credentials is None else credentials.credentials.encode("latin-1")
    matched = False
    for form in _token_forms(expected):  # every form compared: no early exit to time
        matched |= hmac.compare_digest(given, form)
    if not matched:
        raise HTTPException(401, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


@functools.cache
def _token_forms(token: str) -> tuple[bytes, ...]:
    """The bytes a client may send for `token`: UTF-8, and Latin-1 for a non-ASCII token
    that has a Latin-1 form."""
    if token.isascii() or any(ord(c) > 255 for c in token):
        return (token.encode(),)
    return token.encode(), token.encode("latin-1")


_EPOCH_MS = re.compile(r"-?[0-9]{1,16}")  # beyond 16 digits no epoch ms is in range


def parse_time_param(name: str, text: str | None) -> int | None:
    """A time query parameter as epoch ms; 422 naming the parameter when malformed."""
    if text is None:
        return None
    try:
        # ASCII digits only: str.isdigit() and int() also take fullwidth and other digits
        value = int(text) if _EPOCH_MS.fullmatch(text) else parse_time_ms(text)
        if not MIN_MS <= value <= MAX_MS:
            raise ValueError("out of range")
    except ValueError as error:
        raise RequestValidationError([{
            "loc": ["query", name], "type": "value_error", "input": text,
            "msg": f"{name} must be ISO-8601 UTC like 2026-11-24T10:15:30.000Z or epoch "
                   f"milliseconds ({error})",
        }]) from None
    return value
