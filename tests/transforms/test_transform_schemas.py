"""Every named output validates against its shipped JSON Schema (draft 2020-12)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from transform_helpers import finalized, random_raw_event, validate

from scr_middleware.transforms import NAMED_TRANSFORMS, load_schema

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_SCHEMAS = ROOT / "scr_middleware" / "schemas"
DOCS_SCHEMAS = ROOT / "docs" / "schemas"
NAMES = ["event", *sorted(NAMED_TRANSFORMS)]


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_many_generated_events_validate() -> None:
    rng = random.Random(20251221)
    for _ in range(300):
        event = finalized(random_raw_event(rng))
        validate("event", event)
        for name, transform in NAMED_TRANSFORMS.items():
            validate(name, transform(event))


@pytest.mark.parametrize("name", sorted(NAMED_TRANSFORMS))
def test_fixed_event_validates(name: str, event: dict[str, Any]) -> None:
    validate(name, NAMED_TRANSFORMS[name](event))


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("billing_v1", lambda r: r.update(input_tokens=-1)),
        ("billing_v1", lambda r: r.update(final_output="leak")),
        ("billing_v1", lambda r: r.pop("user_id")),
        ("billing_v1", lambda r: r.update(status="maybe")),
        ("analytics_v2", lambda r: r["dims"].update(nested={"a": 1})),
        ("analytics_v2", lambda r: r["tokens"].update(input="12")),
        ("audit_v1", lambda r: r.update(content_hash="sha1:abc")),
        ("audit_v1", lambda r: r["event"].update(timestamp="yesterday")),
        ("canonical", lambda r: r["usage"].update(source="guessed")),
        ("canonical", lambda r: r["outcome"].update(http_status=700)),
    ],
)
def test_schemas_reject_wrong_outputs(name: str, mutate: Any, event: dict[str, Any]) -> None:
    output = json.loads(json.dumps(NAMED_TRANSFORMS[name](event)))
    mutate(output)
    with pytest.raises(jsonschema.ValidationError):
        validate(name, output)


def test_embedded_event_schema_matches_event_json() -> None:
    event_schema = {k: v for k, v in load_schema("event").items() if k != "$schema"}
    assert load_schema("audit_v1")["$defs"]["event"] == event_schema
    assert load_schema("canonical")["$defs"]["event"] == event_schema


def test_docs_copies_match_package_schemas() -> None:
    shipped = sorted(path.name for path in PACKAGE_SCHEMAS.glob("*.json"))
    assert shipped == sorted(f"{name}.json" for name in NAMES)
    for filename in shipped:
        assert (DOCS_SCHEMAS / filename).read_bytes() == (PACKAGE_SCHEMAS / filename).read_bytes()
    assert (DOCS_SCHEMAS / "README.md").is_file()


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError):
        load_schema("billing_v9")
