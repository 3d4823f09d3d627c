"""Check a request's parameters and JSON body against the extract, as Planfix would refuse them.

Built on ``openapi-schema-validator`` (the schema validator ``openapi-core`` itself runs), with
one validator compiled per parameter and body at start: the fake Planfix checks every request
(strict mode) for a fraction of a millisecond, where a full ``openapi-core`` request validation
costs a few (too much for the benchmarks that drive the fake at hundreds of requests a second).
``tests/test_planfix_spec.py`` holds this checker to ``openapi-core``'s verdict.

Not checked here: the content type (the fake reads any body of a JSON operation as JSON) and
multipart bodies (the upload handler wants its ``file`` part itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from sandbox.planfix_spec import Operation, PlanfixSpec

_BASE = "urn:planfix-openapi-extract"
# jsonschema ships no type stubs: its validators and errors are typed loosely here.
Validator = Any
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    where: str  # "query sourceId", "body recipients.roles"...
    message: str
    # A required parameter or field left out (Planfix's code 40), not a bad value.
    missing: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class _Parameter:
    name: str
    location: str  # "path" | "query"
    required: bool
    type: str | None
    validator: Validator


class RequestChecker:
    def __init__(self, spec: PlanfixSpec) -> None:
        registry: Registry[Any] = Registry().with_resource(
            _BASE, Resource.from_contents(spec.document, default_specification=DRAFT4)
        )

        def compile(pointer: str) -> Validator:
            return OAS30Validator(
                {"$ref": f"{_BASE}#{pointer}"}, registry=registry, format_checker=oas30_format_checker
            )

        self._parameters: dict[str, list[_Parameter]] = {}
        self._json_bodies: dict[str, Validator] = {}
        for template, item in spec.document["paths"].items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or "operationId" not in operation:
                    continue
                at = f"/paths/{_escape(template)}/{method}"
                parameters = [
                    _Parameter(
                        name=parameter["name"],
                        location=parameter["in"],
                        required=bool(parameter.get("required", False)),
                        type=_resolve(spec.document, parameter.get("schema", {})).get("type"),
                        validator=compile(f"{at}/parameters/{index}/schema"),
                    )
                    for index, raw in enumerate(operation.get("parameters", []))
                    if (parameter := _resolve(spec.document, raw))["in"] in ("path", "query")
                ]
                self._parameters[operation["operationId"]] = parameters
                if "application/json" in operation.get("requestBody", {}).get("content", {}):
                    self._json_bodies[operation["operationId"]] = compile(
                        f"{at}/requestBody/content/application~1json/schema"
                    )

    def problems(
        self, operation: Operation, *, path: str, query: Mapping[str, str], json_body: Any = None
    ) -> list[Problem]:
        """What Planfix would refuse in this request; ``json_body`` None: no body was sent."""
        found: list[Problem] = []
        path_values = operation.path_parameters(path.removeprefix("/rest"))
        for parameter in self._parameters.get(operation.id, []):
            values = path_values if parameter.location == "path" else query
            where = f"{parameter.location} {parameter.name}"
            if parameter.name not in values:
                if parameter.required:
                    found.append(Problem(where, "required parameter is missing", missing=True))
                continue
            value = _cast(values[parameter.name], parameter.type)
            if value is None:
                found.append(Problem(where, f"{values[parameter.name]!r} is not a {parameter.type}"))
                continue
            found.extend(Problem(where, error.message) for error in parameter.validator.iter_errors(value))
        body = self._json_bodies.get(operation.id)
        if body is not None and json_body is not None:
            errors = sorted(body.iter_errors(json_body), key=lambda e: str(list(e.absolute_path)))
            found.extend(_body_problem(error) for error in errors)
        return found


def _body_problem(error: Any) -> Problem:
    where = " ".join(["body", ".".join(str(part) for part in error.absolute_path)]).rstrip()
    return Problem(where, error.message, missing=error.validator == "required")


def _cast(raw: str, type_: str | None) -> Any:
    """A parameter's text as the type its schema names; None when it cannot be one."""
    if type_ == "integer":
        return int(raw) if _INTEGER.fullmatch(raw) else None
    if type_ == "number":
        try:
            return float(raw)
        except ValueError:
            return None
    if type_ == "boolean":
        return {"true": True, "false": False}.get(raw.lower())
    return raw


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or the component its ``$ref`` names (parameters may be references)."""
    while "$ref" in node:
        _, _, kind, name = node["$ref"].split("/")
        node = document["components"][kind][name]
    return node


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")
