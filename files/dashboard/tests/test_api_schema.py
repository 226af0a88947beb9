"""One source of truth for the API: the OpenAPI document is built from the pydantic models that
validate requests; every example in it and in docs/dashboard-api.md is valid against both the
models and the document's JSON Schema; and a property-based run (schemathesis, from the
document) drives the running app under gunicorn and checks that no answer is a server error and
every answer has a documented status, content type and schema."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
import schemathesis.specs.openapi.checks as openapi_checks
from altmesh_dashboard.answers import ErrorAnswer
from altmesh_dashboard.openapi import ANSWER_MODELS, REQUEST_MODELS, openapi_document
from altmesh_dashboard.payloads import parse
from altmesh_dashboard.tokens import create_service_token
from conftest import Credentials, LiveServer
from flask import Flask
from hypothesis import HealthCheck, given, settings
from keys_support import address_of
from pydantic import BaseModel

REPOSITORY = Path(__file__).resolve().parents[3]
API_DOC = REPOSITORY / "docs" / "dashboard-api.md"
EXAMPLE_PREFIX = "fd12:3456:789a::/48"  # the network prefix the examples are written for
MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in (*REQUEST_MODELS, *ANSWER_MODELS)}
DOC_EXAMPLE = re.compile(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", re.DOTALL)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def _check_example(name: str, example: Any) -> None:
    _validator(name).validate(example)
    model = MODELS[name]
    if model in REQUEST_MODELS:
        import ipaddress

        parse(
            model,
            json.dumps(example).encode(),
            network_prefix=ipaddress.IPv6Network(EXAMPLE_PREFIX),
            zone="alt.",
        )
    else:
        model.model_validate(example)


def _document_examples() -> list[tuple[str, Any]]:
    schemas = openapi_document()["components"]["schemas"]
    return [
        (name, example)
        for name, schema in schemas.items()
        for example in schema.get("examples", [])
    ]


def test_the_openapi_schemas_are_the_pydantic_models() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for model in REQUEST_MODELS:
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        nested = own.pop("$defs", {})
        assert schemas[model.__name__] == own
        for name, nested_schema in nested.items():
            assert schemas[name] == nested_schema
        assert own["additionalProperties"] is False  # unknown fields are refused
    assert set(MODELS) <= set(schemas)


@pytest.mark.parametrize(("name", "example"), _document_examples())
def test_every_example_in_the_openapi_document_is_valid(name: str, example: Any) -> None:
    _check_example(name, example)


def test_every_request_body_has_an_example_in_the_document() -> None:
    with_examples = {name for name, _ in _document_examples()}
    assert {model.__name__ for model in REQUEST_MODELS} <= with_examples


def test_every_example_in_the_api_reference_is_valid() -> None:
    found = DOC_EXAMPLE.findall(API_DOC.read_text())
    assert {name for name, _ in found} >= {m.__name__ for m in REQUEST_MODELS}
    for name, text in found:
        try:
            _check_example(name, json.loads(text))
        except Exception as error:
            raise AssertionError(f"docs/dashboard-api.md example of {name}: {error}") from error


def test_an_invalid_example_is_caught_by_both_checks() -> None:
    """The checks can fail: a heartbeat with a load of 2 is refused by schema and model."""
    with pytest.raises(jsonschema.ValidationError):
        _validator("HeartbeatReport").validate(
            {"load": 2, "active_streams": 0, "bytes_in": 0, "bytes_out": 0, "version": "1"}
        )
    with pytest.raises(Exception, match="load"):
        _check_example(
            "HeartbeatReport",
            {"load": 2, "active_streams": 0, "bytes_in": 0, "bytes_out": 0, "version": "1"},
        )
    with pytest.raises(jsonschema.ValidationError):
        _validator("ErrorAnswer").validate({"message": "no error field"})
    ErrorAnswer.model_validate({"error": "x"})


# ------------------------------------------------------------- property-based run


@pytest.fixture
def api_target(
    app: Flask,
    live_server_factory: Callable[..., LiveServer],
    relay_token: Callable[[str], str],
    create_user: Callable[..., Credentials],
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    """The running app with a real named behind it, a registered relay, a service token and a
    logged-in session. NETWORK_PREFIX is the examples' prefix, so the documented service example
    is published for real."""

    from dns_support import dns_lab

    with dns_lab(tmp_path / "named") as lab:
        live_server = live_server_factory(**lab.settings(NETWORK_PREFIX=EXAMPLE_PREFIX))
        yield from _api_target(app, live_server, relay_token, create_user)


def _api_target(
    app: Flask,
    live_server: LiveServer,
    relay_token: Callable[[str], str],
    create_user: Callable[..., Credentials],
) -> Iterator[dict[str, Any]]:
    import base64

    token = relay_token("relay-1")
    key = base64.b64encode(bytes(range(32))).decode()
    registered = requests.post(
        live_server.url + "/api/v1/relays/register",
        json={
            "name": "relay-1",
            "public_key": key,
            "address": address_of(key, EXAMPLE_PREFIX),
            "endpoints": [{"host": "192.0.2.10", "port": 7000}],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert registered.status_code == 201, registered.text
    with app.app_context():
        from altmesh_dashboard.db import get_session

        _row, service_token = create_service_token(get_session(), "web.alt.", "test")
        get_session().commit()
    viewer = create_user("viewer")
    session = requests.Session()
    page = session.get(live_server.url + "/auth/login", timeout=60).text
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert csrf is not None
    logged_in = session.post(
        live_server.url + "/auth/login",
        data={"username": viewer.username, "password": viewer.password, "csrf_token": csrf[1]},
        allow_redirects=False,
        timeout=60,
    )
    assert logged_in.status_code == 302
    yield {
        "url": live_server.url + "/api/v1",
        "relay": token,
        "service": service_token,
        "cookies": session.cookies.get_dict(),
        "log": live_server.log_text,
    }


API_SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = [
    (path, method.upper())
    for path, methods in openapi_document()["paths"].items()
    for method in methods
]
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 40  # with the schema's examples; about a minute for all operations


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_the_running_app_answers_every_generated_request_as_documented(
    path: str, method: str, api_target: dict[str, Any]
) -> None:
    """Generated bodies (valid and invalid, from the document's schemas) with the right
    credentials: no answer is a 500, and every answer's status, content type and body are the
    ones the document gives for that operation."""
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if path.startswith("/relays/") and method == "POST":
        headers["Authorization"] = f"Bearer {api_target['relay']}"
    elif path.startswith("/services/"):
        headers["Authorization"] = f"Bearer {api_target['service']}"
    else:
        cookies = api_target["cookies"]
    operation = API_SCHEMA[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def answers_as_documented(case: Any) -> None:
        response = case.call(
            base_url=api_target["url"], headers=headers, cookies=cookies, timeout=60
        )
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception:
            print(api_target["log"]()[-4000:])
            raise

    answers_as_documented()
