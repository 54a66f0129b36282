"""Property-based tests generated from the API's own OpenAPI document (schemathesis): valid and
invalid requests of every operation against a live server on loopback; none may answer 5xx, and
every answer must match the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from tests.helpers import serving
from tests.test_api import DOCS, KEYS, api_settings
from xmsearch.api import create_app
from xmsearch.retriever.model.encoder import Encoder


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, detecting_encoder: Encoder) -> Iterator[str]:
    settings = api_settings(tmp_path_factory.mktemp("api"), model=str(detecting_encoder.spec.path))
    with serving(create_app(settings, detecting_encoder)) as url:
        schemathesis.openapi.from_url(f"{url}/openapi.json")  # up and answering
        import httpx

        httpx.post(f"{url}/documents?wait=true", json={"documents": DOCS}, headers={"X-API-Key": KEYS["admin"]})
        yield url


# The document the app serves at /openapi.json (building the app loads nothing; its start-up does).
schema = schemathesis.openapi.from_dict(create_app(api_settings(Path("unused"))).openapi())


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers={"X-API-Key": KEYS["admin"]},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
