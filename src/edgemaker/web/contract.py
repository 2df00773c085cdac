"""What the OpenAPI schema promises, kept next to the checks that keep the promise.

The server validates names with the same regular expressions the schema publishes (`NAME_RE`,
`CLASS_RE`, `FILE_RE`, `RUN_ID_RE`), every error status a route can answer is declared with the one
error shape (`document_errors`), and a method a path does not take gets 405 with `Allow`.
Schemathesis (tests/test_web_schema.py) holds the server to this.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from .errors import WebError

# Spaces a name may carry at its ends (trimmed; all are ones str.strip() removes): the Zs category.
_WS = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
# Never anywhere in a name: control characters (C0, DEL, C1), what file systems forbid, bidi controls
# (a right-to-left override makes "gpj.exe" read "exe.jpg"), line/paragraph separators and the BOM.
# Lone surrogates are not text at all (no pattern engine takes them): safe_name refuses them first.
_BAD = r"\x00-\x1f\x7f-\x9f/\\:*?\"<>|\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff"
_ZERO_WIDTH = r"\u200b-\u200d\u2060"  # invisible: not at either end (so never a whole name)
_EDGE = rf"[^{_BAD}.{_WS}{_ZERO_WIDTH}]"  # first and last character once trimmed: no dot, space or invisible
_MID = rf"[^{_BAD}]"
MAX_NAME = 60  # characters; 60 x 4 UTF-8 bytes stays under the 255-byte file-name limit


def _anycase(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# Windows refuses these as file or folder names, with any extension ("CON", "nul.txt", "COM1.png").
WINDOWS_RESERVED_RE = (r"(?:" + "|".join(_anycase(w) for w in ("con", "prn", "aux", "nul")) + "|"
                       + _anycase("com") + "[1-9]|" + _anycase("lpt") + r"[1-9])(?:\.[^.]*)*")
NAME_RE = rf"^(?![{_WS}]*{WINDOWS_RESERVED_RE}[{_WS}]*$)[{_WS}]*{_EDGE}(?:{_MID}*{_EDGE})?[{_WS}]*$"
_RESERVED = "|".join(_anycase(word) for word in ("train", "val", "valid", "validation", "test"))
CLASS_RE = rf"^(?![{_WS}]*(?:{_RESERVED})[{_WS}]*$)" + NAME_RE[1:]
FILE_RE = r"^[^./\x00][^/\x00]*$"
MAX_FILE = 255
RUN_ID_RE = r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$"


def is_file_name(filename: str) -> bool:
    """One file directly in a folder, as FILE_RE says, and short enough for the file system
    (255 bytes; a longer one would fail as an OSError, not as "no such file")."""
    from pathlib import PurePath

    return (bool(re.match(FILE_RE, filename)) and filename == PurePath(filename).name
            and len(filename.encode("utf-8", "surrogatepass")) <= MAX_FILE)

NAME_SCHEMA = {"pattern": NAME_RE, "minLength": 1, "maxLength": MAX_NAME}
CLASS_SCHEMA = {"pattern": CLASS_RE, "minLength": 1, "maxLength": MAX_NAME}
# path parameter -> what the server accepts there (the same rule on every route that takes it)
PARAMETERS = {"name": NAME_SCHEMA, "project_name": NAME_SCHEMA, "label": CLASS_SCHEMA,
              "filename": {"pattern": FILE_RE, "minLength": 1, "maxLength": MAX_FILE},
              "run_id": {"pattern": RUN_ID_RE, "minLength": 20, "maxLength": 20}}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: int
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error, whatever raised it: `{"error": {"status", "code", "message"}}`."""
    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


WHY = {400: "Bad request (an invalid name, value or Content-Length)", 401: "The server's token is missing",
       403: "A state-changing request from another site", 404: "No such project, class, run or file",
       405: "Method not allowed", 409: "Conflicts with the current state (exists, busy, not trained, wrong task)",
       411: "An upload without Content-Length", 413: "The body or a file is over the size limit",
       415: "An upload that is not a readable image or sound", 421: "The Host header does not name this machine",
       422: "The request does not match this schema", 500: "Internal error", 408: "The upload arrived too slowly"}
COMMON = (400, 401, 413, 421, 500)
UNSAFE = (403, 408, 411)


def errors(*codes: int) -> dict:
    """FastAPI `responses=` for route-specific error statuses."""
    return {c: {"model": ErrorResponse, "description": WHY[c]} for c in codes}


def document_errors(schema: dict, predict_project: bool = True) -> dict:
    """Declare on every operation the statuses any route answers (the guard's, 404 where a path names
    something, 422 where FastAPI validates) with the one error shape, and the name rules on the
    parameters that carry names. `predict_project` False: `serve --model`, the predict API alone."""
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}), ErrorResponse=error_schema)
    if not predict_project:  # `serve --model`: the project routes answer 404 no_projects; not offered
        schema["paths"] = {k: v for k, v in schema.get("paths", {}).items() if not k.startswith("/api/v1/projects")}
    predict = schema.get("paths", {}).get("/api/v1/predict", {}).get("post", {})
    for p in list(predict.get("parameters", [])):
        if p["name"] == "project_name":  # projects: which project's model (required); --model: not taken
            if predict_project:
                p.update(required=True, schema={"type": "string", "title": "Project Name"})
            else:
                predict["parameters"].remove(p)
    for item in schema.get("paths", {}).values():
        for method, op in item.items():
            params = [p for p in op.get("parameters", []) if p.get("in") == "path"]
            for p in op.get("parameters", []):
                if p["name"] in PARAMETERS and p.get("in") in ("path", "query"):
                    target = p["schema"]
                    if "anyOf" in target:  # an optional query parameter: constrain its string branch
                        target = next((s for s in target["anyOf"] if s.get("type") == "string"), target)
                    target.update(PARAMETERS[p["name"]])
            codes = [*COMMON, *(UNSAFE if method.upper() in ("POST", "PUT", "PATCH", "DELETE") else ()),
                     *((404,) if params or any(p["name"] == "project_name" for p in op.get("parameters", [])) else ())]
            responses = op.setdefault("responses", {})
            for code in codes:
                responses.setdefault(str(code), {"description": WHY[code]})
            for code, response in responses.items():
                if code[0] in "45":
                    response["content"] = {"application/json": {"schema": ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def allowed_methods(app, scope) -> list[str]:
    """Every method some route takes at this path (Starlette's own 405 names only the first route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET", "type": "http"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:  # mounts (no methods) answer every method themselves
            methods |= set(route_methods)
    return sorted(methods)


def train_request_model(backbones: list[str], formats: list[str], strategies: list[str] = ()):
    """The train request as a strict pydantic model, so the schema lists every option with its
    bounds and the server refuses (422) exactly what the schema refuses."""
    import math
    from typing import Annotated, Literal

    from pydantic import BeforeValidator, Field, create_model

    from ..devices import DEVICES

    def whole(value):  # JSON Schema's integer: 3 and 3.0, never "3" or true
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be a whole number")
        return int(value)

    def Int(ge: int, le: int):  # a type: whole numbers within [ge, le]
        return Annotated[int, Field(ge=ge, le=le), BeforeValidator(whole)]

    def finite(value):  # NaN and infinity are refused as what they are, not as out of range
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def Real(**bounds):
        return Annotated[float, Field(**bounds), BeforeValidator(finite)]
    strict = ConfigDict(extra="forbid", strict=True)
    backbone = Literal[tuple(backbones)] if backbones else str  # type: ignore[valid-type]
    fmt = Literal[tuple(formats)]  # type: ignore[valid-type]
    options = create_model(
        "TrainOptions", __config__=strict,
        epochs=(Int(1, 100_000) | None, Field(None, description="training epochs of the head")),
        batch_size=(Int(1, 65_536) | None, Field(None)),
        learning_rate=(Real(gt=0, le=1e3) | None, Field(None)),
        dropout=(Real(ge=0, lt=1) | None, Field(None)),
        backbone=(backbone | None, Field(None, description="a backbone for the project's task (GET /options)")),
        augment=(bool | None, Field(None, description="true/false; null: chosen on validation")),
        seed=(Int(0, 2**32 - 1) | None, Field(None)),
        auto_minutes=(Real(gt=0, le=24 * 60) | None, Field(None, description="choose on validation within N minutes")),
        fine_tune=(Literal["auto"] | Int(0, 64) | None,
                   Field(None, description="last backbone blocks to train (0: head only); auto: chosen on validation")),
        device=(Literal[tuple(DEVICES)] | None,  # type: ignore[valid-type]
                Field(None, description="a device preset: its flash and RAM become the run's budgets (GET /options)")),
        **({"strategy": (Literal[tuple(strategies)] | None,  # type: ignore[valid-type]
                         Field(None, description="a registered training strategy; default: chosen from the options"))}
           if strategies else {}),
    )
    return create_model(
        "TrainRequest", __config__=strict,
        options=(options, Field(default_factory=options)),
        formats=(list[fmt] | None, Field(None, max_length=len(formats),
                                         description="export formats; default: all the page offers")),
    )


# One server-sent event as a client parses it (its `data` is a JSON text: a progress event, or the
# final status after `event: end`).
SSE_EVENT = {"type": "object", "properties": {"data": {"type": "string"}, "event": {"type": "string"},
                                              "id": {"type": "string"}, "retry": {"type": "integer"}}}
FILE_RESPONSE = {200: {"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}}


def media_types(modality: str | None) -> list[str]:
    """The upload content types a model or project reads (by file extension, as the server does)."""
    import mimetypes

    from ..data.folders import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS

    exts = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}.get(modality, IMAGE_EXTENSIONS | AUDIO_EXTENSIONS)
    found = {mimetypes.types_map.get(e) or ("audio/flac" if e == ".flac" else None) for e in exts}
    return sorted(t for t in found if t)


def upload_body(field: str, many: bool = False, types: list[str] | None = None) -> dict:
    """`openapi_extra` declaring a multipart upload the route reads itself (to bound sizes while streaming);
    other form fields are refused (`check_fields`)."""
    binary = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": binary, "minItems": 1} if many else binary
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": [field], "properties": {field: prop}, "additionalProperties": False},
        "encoding": {field: {"contentType": ", ".join(types or media_types(None))}}}}}}


class Ranked(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    """What POST /predict answers: the top-k classes and every class's probability."""
    model: str
    file: str
    top: list[Ranked]
    probabilities: dict[str, float]


def require_multipart(request, field: str) -> None:
    """An upload is multipart/form-data (what the schema declares); anything else is 415, before reading it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise WebError(415, "unsupported_media_type", f"send the upload as multipart/form-data with the file(s) in form "
                                                      f"field {field!r}, not {kind or 'a body without a Content-Type'}")


def check_fields(form, field: str) -> None:
    """The upload's form holds only `field` (the schema's additionalProperties: false)."""
    other = sorted(set(form.keys()) - {field})
    if other:
        raise WebError(400, "bad_upload", f"unexpected form field {other[0][:40]!r}; send the file(s) as form field {field!r}")
