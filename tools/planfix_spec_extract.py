"""Cut Planfix's published OpenAPI document down to what the bridge uses, facts only.

    python -m tools.planfix_spec_extract [SPEC] [--out PATH]

SPEC is the full copy of Planfix's ``swagger.json`` (default: ``../shared/reference/
planfix-openapi-1.3.4.json`` beside the repository); the extract goes to
``tests/planfix_spec/planfix-openapi-extract.json`` (read by the fake Planfix's strict mode and
by ``tests/test_planfix_spec.py``).

Kept: the operations in ``OPERATIONS`` (paths, methods, operationIds, parameters, request
bodies, responses with their status codes and headers) and every component they reach through
``$ref``, transitively. Dropped: prose (descriptions, summaries, titles, tags, examples).
Where the document contradicts itself or leaves out what every Planfix answer has, ``PATCHES``
changes the extract, each change commented here and listed in the extract's
``x-bridge-patches`` with the place in the published document that justifies it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = REPO.parent / "shared" / "reference" / "planfix-openapi-1.3.4.json"
DEFAULT_OUT = REPO / "tests" / "planfix_spec" / "planfix-openapi-extract.json"
PUBLISHED_AT = "https://help.planfix.com/restapidocs/swagger.json"
EXPECTED_VERSION = "1.3.4"

# The calls the bridge makes, and those later issues will make (people, task statuses), so the
# extract need not change when they come.
OPERATIONS = (
    "ping",
    "post-task",
    "get-task-by-id",
    "post-task-by-id",
    "post-task-add-comment",
    "get-task-comments",
    "post-task-update-comment",
    "get-comment-id",
    "delete-comment-id",
    "post-file-upload",
    "get-file-id",
    "get-file-id-download",
    "get-user-list",
    "get-user-id",
    "get-contact-list",
    "post-contact",
    "get-task-status-list",
)

# Keys that only explain; a field *named* like one of them (a ``description`` property) stays.
PROSE = frozenset({"description", "summary", "title", "tags", "example", "examples", "x-examples"})
# Maps whose keys are names chosen by the document (field names, status codes, media types...),
# never keywords: their values are walked, their keys all kept.
NAMED_MAPS = frozenset({"properties", "paths", "responses", "headers", "content", "schemas", "parameters"})
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})

ApiError = {"$ref": "#/components/schemas/ApiResponseError"}


# --- extraction -----------------------------------------------------------------------------


def strip_prose(node: Any, *, named: bool = False) -> Any:
    """A copy of ``node`` without prose keys; under a named map every key is kept."""
    if isinstance(node, dict):
        return {
            key: strip_prose(value, named=(key in NAMED_MAPS and not named))
            for key, value in node.items()
            if named or key not in PROSE
        }
    if isinstance(node, list):
        return [strip_prose(item) for item in node]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _component(spec: dict[str, Any], ref: str) -> tuple[str, str, Any]:
    parts = ref.split("/")
    if len(parts) != 4 or parts[:2] != ["#", "components"]:
        raise ValueError(f"unsupported $ref {ref!r} (only #/components/<kind>/<name>)")
    return parts[2], parts[3], spec["components"][parts[2]][parts[3]]


def build_extract(spec: dict[str, Any], *, spec_sha256: str = "") -> dict[str, Any]:
    version = spec.get("info", {}).get("version")
    if version != EXPECTED_VERSION:
        raise ValueError(f"expected Planfix swagger {EXPECTED_VERSION}, got {version!r}")
    paths: dict[str, dict[str, Any]] = {}
    found: set[str] = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS and operation.get("operationId") in OPERATIONS:
                paths.setdefault(path, {})[method] = strip_prose(operation)
                found.add(operation["operationId"])
        if path in paths and "parameters" in item:  # path-level parameters apply to every method
            paths[path]["parameters"] = strip_prose(item["parameters"])
    missing = [op for op in OPERATIONS if op not in found]
    if missing:
        raise ValueError(f"operations not in the document: {missing}")

    components: dict[str, dict[str, Any]] = {}
    pending = [*_refs(paths), "#/components/schemas/ApiResponseError"]  # the patches use it
    while pending:
        kind, name, value = _component(spec, pending.pop())
        if name in components.get(kind, {}):
            continue
        kept = strip_prose(value)
        components.setdefault(kind, {})[name] = kept
        pending.extend(_refs(kept))
    components["securitySchemes"] = strip_prose(spec["components"]["securitySchemes"])

    extract: dict[str, Any] = {
        "openapi": spec["openapi"],
        "info": {"title": spec["info"]["title"], "version": version},
        "x-source": {
            "publishedAt": PUBLISHED_AT,
            "copy": f"planfix-openapi-{version}.json",
            "sha256": spec_sha256,
            "generatedBy": "tools/planfix_spec_extract.py",
        },
        "x-bridge-patches": [],
        "servers": [{"url": server["url"]} for server in spec.get("servers", [])],
        "security": spec.get("security", []),
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": {kind: dict(sorted(components[kind].items())) for kind in sorted(components)},
    }
    for patch in PATCHES:
        where = patch.apply(extract)
        extract["x-bridge-patches"].append(
            {"id": patch.id, "where": where, "change": patch.change, "why": patch.why}
        )
    # OpenAPI 3.0 requires a description on every response: an empty one keeps the extract a
    # valid document without the prose.
    for _, _, operation in _operations(extract):
        for response in operation["responses"].values():
            response["description"] = ""
    return extract


def render(extract: dict[str, Any]) -> str:
    return json.dumps(extract, indent=1, ensure_ascii=False) + "\n"


# --- patches ----------------------------------------------------------------------------------


class Patch:
    def __init__(self, id: str, change: str, why: str, apply: Callable[[dict[str, Any]], list[str]]) -> None:
        self.id = id
        self.change = change
        self.why = why
        self._apply = apply

    def apply(self, extract: dict[str, Any]) -> list[str]:
        """Change ``extract`` in place; the JSON pointers changed (a patch that finds nothing fails)."""
        where = self._apply(extract)
        if not where:
            raise ValueError(f"patch {self.id} found nothing to change: the document moved on?")
        return where


def _operations(extract: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in extract["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _pointer(*parts: str) -> str:
    return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _walk(node: Any, at: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if isinstance(node, dict):
        yield at, node
        for key, value in node.items():
            yield from _walk(value, (*at, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, (*at, str(index)))


def _roles_array(extract: dict[str, Any]) -> list[str]:
    # The schema types roles as one string, the document's own "Add new comment" example
    # (POST /task/{id}/comments/) sends ["auditor", "assigner"]: accept both.
    roles = extract["components"]["schemas"]["NotifiedRequest"]["properties"]["roles"]
    one = {"type": "string", "enum": roles["enum"]}
    roles.clear()
    roles["oneOf"] = [one, {"type": "array", "items": copy.deepcopy(one)}]
    return [_pointer("components", "schemas", "NotifiedRequest", "properties", "roles")]


def _result_order_field(extract: dict[str, Any]) -> list[str]:
    # resultOrder items name their key "filed" (sic), the example beside it sends "field":
    # accept both spellings with the same schema.
    where = []
    for at, node in _walk(extract["paths"]):
        if at and at[-1] == "resultOrder":
            properties = node.get("items", {}).get("properties", {})
            if "filed" in properties and "field" not in properties:
                properties["field"] = copy.deepcopy(properties["filed"])
                where.append(_pointer("paths", *at, "items", "properties", "field"))
    return where


def _boolean_defaults(extract: dict[str, Any]) -> list[str]:
    # `silent` is a boolean parameter whose default is the string "false": the boolean false.
    where = []
    for at, node in _walk(extract["paths"]):
        if node.get("type") == "boolean" and node.get("default") in ("false", "true"):
            node["default"] = node["default"] == "true"
            where.append(_pointer("paths", *at, "default"))
    return where


def _person_id_format(extract: dict[str, Any]) -> list[str]:
    # PersonRequest/PersonResponse.id are strings with format int64, yet every example of them
    # is prefixed ("user:5", "contact:10"): the format is dropped, the type kept.
    where = []
    for name in ("PersonRequest", "PersonResponse"):
        field = extract["components"]["schemas"][name]["properties"]["id"]
        if field.get("type") == "string" and field.pop("format", None) == "int64":
            where.append(_pointer("components", "schemas", name, "properties", "id", "format"))
    return where


def _location_required(extract: dict[str, Any]) -> list[str]:
    # The 302 of GET /file/{id}/download "redirects to a download location" through its Location
    # header: a 302 without one leads nowhere (RFC 9110 15.4.3), so the header is required.
    header = extract["paths"]["/file/{id}/download"]["get"]["responses"]["302"]["headers"]["Location"]
    header["required"] = True
    return [_pointer("paths", "/file/{id}/download", "get", "responses", "302", "headers", "Location")]


def _unlisted_errors(extract: dict[str, Any]) -> list[str]:
    # A few operations list no error answer at all, though a missing comment or task must be
    # answered somehow: 400 in the error shape, as their siblings (GET /file/{id}, POST
    # /task/{id}/comments/{commentId} with code 5000) do.
    where = []
    for path, method, operation in _operations(extract):
        responses = operation["responses"]
        if not any(code[0] in "45" for code in responses):
            responses["400"] = _error_response()
            where.append(_pointer("paths", path, method, "responses", "400"))
    return where


def _generic_errors(extract: dict[str, Any]) -> list[str]:
    # Answers any call can get, in the error shape, whether or not its operation lists them: a
    # bad token (401, as /ping lists: the bearer scheme covers every operation), the daily cap
    # (403 code 22, with a time to reset: Planfix's error-code page and public code that runs
    # against it), the per-second overrun (429) and a server error (5XX, as /ping lists).
    where = []
    for path, method, operation in _operations(extract):
        responses = operation["responses"]
        added = [status for status in ("401", "403", "429", "5XX") if status not in responses]
        for status in added:
            responses[status] = _error_response()
        if added:
            where.append(_pointer("paths", path, method, "responses") + " + " + ", ".join(added))
    return where


def _filter_type_numbers(extract: dict[str, Any]) -> list[str]:
    # The complex filters type "type" as a number whose enum lists strings ("9126 // Employee
    # telegramId"): no number can match one. Every filter example of the document sends the
    # number alone ({"type": 9126, ...}): the enum keeps the numbers, in the document's order.
    where = []
    for name, schema in extract["components"]["schemas"].items():
        field = schema.get("properties", {}).get("type", {})
        enum = field.get("enum")
        labelled = bool(enum) and all(
            isinstance(item, str) and item.split("//")[0].strip().isdigit() for item in enum
        )
        if name.startswith("Complex") and field.get("type") == "number" and labelled:
            field["enum"] = [int(item.split("//")[0]) for item in enum]
            where.append(_pointer("components", "schemas", name, "properties", "type", "enum"))
    return where


def _error_response() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": dict(ApiError)}}}


PATCHES = (
    Patch(
        "notified-request-roles-array",
        "NotifiedRequest.roles: one of the enum's strings, or an array of them",
        "typed string, but the document's 'Add new comment' example sends roles: ['auditor', 'assigner']",
        _roles_array,
    ),
    Patch(
        "result-order-field-spelling",
        "resultOrder items: property 'field' beside the misspelled 'filed'",
        "the items name 'filed', the request example beside them sends 'field'",
        _result_order_field,
    ),
    Patch(
        "boolean-default-not-string",
        "boolean parameters: default 'false' (a string) becomes false",
        "a boolean parameter cannot default to a string",
        _boolean_defaults,
    ),
    Patch(
        "person-id-prefixed",
        "PersonRequest.id, PersonResponse.id: format int64 dropped (still strings)",
        "every example of a person id is prefixed ('user:5', 'contact:10'), not an int64",
        _person_id_format,
    ),
    Patch(
        "filter-type-numbers",
        "ComplexUserFilter/ComplexContactFilter type: the enum's '9126 // Employee telegramId' "
        "strings become their numbers",
        "typed number with an enum of strings; every filter example sends the number alone",
        _filter_type_numbers,
    ),
    Patch(
        "download-location-required",
        "GET /file/{id}/download 302: Location header required",
        "the 302 redirects to a download location; without Location there is none",
        _location_required,
    ),
    Patch(
        "unlisted-error-answers",
        "operations listing no error answer get 400 in the ApiResponseError shape",
        "a missing comment or task must be answered; siblings answer 400 with code 5000/7000",
        _unlisted_errors,
    ),
    Patch(
        "generic-error-answers",
        "every operation: 401, 403, 429 and 5XX in the ApiResponseError shape where not listed",
        "bad token (401 on /ping), daily cap (403 code 22), per-second overrun (429), "
        "server error (500 on /ping)",
        _generic_errors,
    ),
)


# --- command line -------------------------------------------------------------------------------


def extract_file(spec_path: Path) -> str:
    raw = spec_path.read_bytes()
    return render(build_extract(json.loads(raw), spec_sha256=hashlib.sha256(raw).hexdigest()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        print(f"no Planfix OpenAPI document at {args.spec}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(extract_file(args.spec), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
