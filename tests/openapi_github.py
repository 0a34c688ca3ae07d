"""GitHub's published OpenAPI description (npm `@octokit/openapi`), as request-body validators.

The fake server checks every request body against it, with unknown fields rejected, so that the fake
and the client under test cannot share one mistake.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path("node_modules/@octokit/openapi/generated/api.github.com.deref.json")
INSTALL = "npm install --prefix .tools @microsoft/sarif-multitool@5 @octokit/openapi@23 (as .ci/run does)"


def spec_path() -> Path | None:
    for base in (os.environ.get("REDZONE_NODE_TOOLS"), ROOT / ".tools"):
        if base and (Path(base) / SPEC).exists():
            return Path(base) / SPEC
    return None


def _strict(schema: Any) -> Any:
    """OpenAPI 3.0 -> JSON Schema: `nullable` becomes a type union, and an object that lists its
    properties gets additionalProperties: false unless it says otherwise or is part of a composition."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if k not in ("example", "examples", "x-github")}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    composed = any(k in out for k in ("allOf", "anyOf", "oneOf"))
    if "properties" in out and "additionalProperties" not in out and not composed:
        out["additionalProperties"] = False
    return out


class Operations:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._routes: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for template, item in spec["paths"].items():
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            self._routes.append((pattern, template, item))

    def find(self, path: str, method: str) -> tuple[str, dict[str, Any]] | None:
        # Literal segments win over parameters (`/pulls/comments/1` vs `/pulls/{pull_number}/...`).
        matches = [(t, item) for p, t, item in self._routes if p.match(path) and method.lower() in item]
        if not matches:
            return None
        template, item = min(matches, key=lambda m: m[0].count("{"))
        return template, item[method.lower()]

    @functools.cache  # noqa: B019 - one Operations per session
    def _validator(self, template: str, method: str) -> jsonschema.protocols.Validator | None:
        item = next(i for _, t, i in self._routes if t == template)[method]
        content = item.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            return None
        schema = _strict(content["schema"])
        return jsonschema.Draft7Validator(schema)

    def check(self, path: str, method: str, body: Any) -> list[str]:
        """Problems with a request: an unknown route, or a body the spec does not allow."""
        found = self.find(path, method)
        if found is None:
            return [f"{method} {path} is not in GitHub's OpenAPI description"]
        template, _ = found
        validator = self._validator(template, method.lower())
        if validator is None:
            return [] if body is None else [f"{method} {template} takes no JSON body, got {body!r}"]
        if body is None:
            return []
        return [
            f"{method} {template}: {e.message} at /{'/'.join(map(str, e.path))}"
            for e in validator.iter_errors(body)
        ]


@functools.lru_cache(maxsize=1)
def operations() -> Operations | None:
    """Loaded once per session: the description is about 70 MB."""
    path = spec_path()
    if path is None:
        return None
    return Operations(json.loads(path.read_text(encoding="utf-8")))
