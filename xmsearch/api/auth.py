"""API keys: stored as SHA-256 digests in the settings, sent as `X-API-Key: <key>` or
`Authorization: Bearer <key>`. A key bound to a tenant reads and writes only that tenant's documents."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from xmsearch.api.errors import ApiError
from xmsearch.retriever.index.filters import Condition, owned_by
from xmsearch.settings import ApiKey, Settings

KEY_PREFIX = "xms_"

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, and the tenant it is bound to (None: every tenant)."""

    name: str
    tenant: str | None

    @property
    def scope(self) -> list[Condition]:
        """What every search of this caller is ANDed with: its tenant, if the key is bound to one."""
        return [] if self.tenant is None else [owned_by(self.tenant)]

    def owner(self, tenant: str | None, what: str) -> str | None:
        """The tenant a request about documents acts on: the one asked for (None: none), or a bound
        key's own; a bound key asking for another is refused (403 tenant_forbidden)."""
        if self.tenant is not None and tenant not in (None, self.tenant):
            raise ApiError(403, "tenant_forbidden", f"this key may not {what} documents of tenant {tenant!r}")
        return self.tenant if self.tenant is not None else tenant

    def require_admin(self, what: str) -> None:
        """Operations on the whole collection are for unbound (administrator) keys (403 admin_required)."""
        if self.tenant is not None:
            raise ApiError(
                403, "admin_required", f"this key is bound to tenant {self.tenant!r}: only an unbound key may {what}"
            )

    def within(self, tenant: str | None, what: str) -> list[Condition]:
        """What a listing or count covers: one tenant's documents when asked for (a bound key: only
        its own), else every document the caller may see."""
        return self.scope if tenant is None else [owned_by(self.owner(tenant, what))]


def new_key() -> tuple[str, str]:
    """A fresh random key and the SHA-256 digest to put in XMSEARCH_API_KEYS."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, digest(key)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """The configured keys by digest. Random keys of 256 bits need no slow hash: the digest only keeps
    the keys themselves out of the settings."""

    def __init__(self, settings: Settings) -> None:
        self.required = settings.api_auth == "required"
        self.keys: dict[str, ApiKey] = {k.sha256: k for k in settings.api_keys}

    def principal(self, key: str | None) -> Principal:
        if not self.required:
            return Principal("anonymous", None)
        if not key:
            raise ApiError(401, "missing_api_key", "send an API key in the X-API-Key header (or as a bearer token)")
        found = self.keys.get(digest(key))
        if found is None:
            raise ApiError(401, "invalid_api_key", "the API key is not one of the configured keys")
        return Principal(found.name, found.tenant)


def principal(
    request: Request,
    header_key: Annotated[str | None, Depends(api_key_header)],
    bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller of this request (a FastAPI dependency)."""
    ring: KeyRing = request.app.state.keys
    return ring.principal(header_key or (bearer_key.credentials if bearer_key else None))


Caller = Annotated[Principal, Depends(principal)]
