"""A seeded generator of malformed request messages, and of valid ones to mix in.

Every malformed message breaks the request contract (README, "The request message") in one
named way; the same seed gives the same messages, so a failure can be replayed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any
from uuid import UUID

from bridge_dagster.events.requests import build_request
from tests.reliability.load import ENVIRONMENT, Outgoing, original_envelope

# Just under the broker's 1,048,588-byte limit once the record's own framing is added, and
# just over it: the broker refuses the second kind, so it never reaches the stack.
NEAR_LIMIT_BYTES = 1_040_000
OVER_LIMIT_BYTES = 1_100_000
# The kind of the valid requests in the original OmniNode envelope, which must be accepted.
ORIGINAL = "valid_original_envelope"


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _envelope(rng: random.Random, payload: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """An envelope around `payload`, with `overrides` replacing any of its fields."""
    workflow_id = payload.get("workflow_id")
    envelope = {
        "envelope_version": "1.0",
        "event_id": str(_uuid(rng)),
        "event_type": "stamp_workflow_requested",
        "event_version": "1.0",
        "correlation_id": workflow_id if isinstance(workflow_id, str) else None,
        "payload": payload,
    }
    envelope.update(overrides)
    return envelope


def _payload(rng: random.Random, **fields: Any) -> dict[str, Any]:
    return {"workflow_id": str(_uuid(rng)), "content": "x = 1\n", **fields}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _invalid_utf8(rng: random.Random) -> bytes:
    # 0xFF never occurs in UTF-8, so each of these is invalid wherever the rest falls.
    inner = b"\xff" + bytes(rng.choice([0xFE, 0xC0, 0x80, 0xED]) for _ in range(rng.randint(0, 7)))
    return b'{"envelope_version": "1.0", "payload": {"content": "' + inner + b'"}}'


def _not_json(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"{",
            b"envelope_version=1.0&event_type=stamp_workflow_requested",
            b'{"envelope_version": "1.0",}',
            b"<request><content>x</content></request>",
            bytes(rng.randint(0x21, 0x7A) for _ in range(rng.randint(1, 60))) + b"{",
            b"NaNaN",
        ]
    )


def _not_an_object(rng: random.Random) -> bytes:
    return _json(
        rng.choice(
            [
                [],
                [_envelope(rng, _payload(rng))],
                rng.randint(-(10**12), 10**12),
                rng.random(),
                "stamp_workflow_requested",
                None,
                True,
            ]
        )
    )


# A field and a value of the wrong type (or a value out of its domain) for it.
_WRONG_TYPES: list[tuple[str, Any]] = [
    ("workflow_id", 12345),
    ("workflow_id", ["0b6e3f5c-8a1d-4c2e-9f7a-2d4b6c8e0a1f"]),
    ("workflow_id", "not-a-uuid"),
    ("content", 42),
    ("content", ["x"]),
    ("content", {"text": "x"}),
    ("content_b64", 7),
    ("file_path", 3.5),
    ("stamp_type", 1),
    ("stamp_type", "heavy"),
    ("enable_intelligence", "yes"),
    ("enable_intelligence", 1),
    ("write_back", "true"),
    ("metadata", ["a", "b"]),
    ("metadata", "k=v"),
    ("metadata", {"k": 1}),
    ("metadata", {"k": None}),
    ("namespace", 99),
    ("namespace", "not a namespace!"),
    ("intelligence_context", {"q": 1}),
    ("content_type", False),
]


def _wrong_types(rng: random.Random) -> bytes:
    field, value = rng.choice(_WRONG_TYPES)
    payload = _payload(rng)
    payload[field] = value
    if field == "content_b64":
        del payload["content"]
    return _json(_envelope(rng, payload))


def _bad_envelope(rng: random.Random) -> bytes:
    payload = _payload(rng)
    broken = rng.choice(
        [
            {"payload": "content=x"},
            {"payload": [payload]},
            {"payload": None},
            {"event_type": "stamp_workflow_completed"},
            {"event_type": 5},
            {"event_timestamp": "yesterday"},
            {"event_timestamp": "2025-01-31T12:00:00"},  # no zone
            {"event_id": "not-an-id"},
            {"correlation_id": str(_uuid(rng))},  # differs from the payload's workflow_id
        ]
    )
    return _json({**_envelope(rng, payload), **broken})


def _unknown_version(rng: random.Random) -> bytes:
    version = rng.choice(["2", "2.0", "0.9", "1.0.0", "v1", "", 1, 1.0, None, "ONEX-1"])
    envelope = _envelope(rng, _payload(rng), envelope_version=version)
    if rng.random() < 0.1:
        del envelope["envelope_version"]
    return _json(envelope)


def _huge_metadata(rng: random.Random) -> bytes:
    shape = rng.choice(["entries", "value", "key"])
    if shape == "entries":
        metadata = {f"k{i}": "v" for i in range(rng.randint(65, 400))}
    elif shape == "value":
        metadata = {"note": "v" * rng.randint(4_097, 60_000)}
    else:
        metadata = {"k" * rng.randint(129, 2_000): "v"}
    return _json(_envelope(rng, _payload(rng, metadata=metadata)))


def _contract_broken(rng: random.Random) -> bytes:
    payload = rng.choice(
        [
            _payload(rng, content_b64="eA=="),  # two kinds of content
            {"workflow_id": str(_uuid(rng))},  # nothing to stamp
            _payload(rng, content=None, content_b64="not base64!"),
            _payload(rng, colour="blue"),  # an unknown field
            _payload(rng, write_back=True),  # write-back of inline content
            _payload(rng, intelligence_context="?" * 10_001),
            _payload(rng, namespace="n" * 256),
            _payload(rng, file_path="a\u0000b", content=None),
            {"content": "no workflow id"},
        ]
    )
    return _json(_envelope(rng, payload))


def _empty(rng: random.Random) -> bytes | None:
    return rng.choice([None, b"", b" ", b"\n"])


def _near_limit(rng: random.Random) -> bytes:
    # An over-long metadata value, padded so the whole message is NEAR_LIMIT_BYTES.
    head = _json(_envelope(rng, _payload(rng, metadata={"blob": ""})))
    filler = rng.randbytes(NEAR_LIMIT_BYTES).hex().encode()[: NEAR_LIMIT_BYTES - len(head)]
    return head.replace(b'"blob": ""', b'"blob": "' + filler + b'"')


# (kind, how many per 10,000, generator); near-limit messages are few on purpose, each is a
# megabyte on the topic and a bounded 600 KB dead letter.
KINDS: list[tuple[str, int, Callable[[random.Random], bytes | None]]] = [
    ("invalid_utf8", 1200, _invalid_utf8),
    ("not_json", 1200, _not_json),
    ("not_an_object", 1200, _not_an_object),
    ("wrong_types", 2000, _wrong_types),
    ("bad_envelope", 1200, _bad_envelope),
    ("unknown_envelope_version", 1200, _unknown_version),
    ("huge_metadata", 300, _huge_metadata),
    ("contract_broken", 1294, _contract_broken),
    ("empty_value", 400, _empty),
    ("near_limit", 6, _near_limit),
]


def malformed(count: int, seed: int) -> list[Outgoing]:
    """`count` malformed messages in the proportions of KINDS; one in ten has an empty key
    (b"" or none), the rest a random id as key."""
    rng = random.Random(seed)
    total = sum(weight for _, weight, _ in KINDS)
    messages = []
    for kind, weight, make in KINDS:
        for _ in range(max(1, count * weight // total)):
            key = rng.choice([b"", None]) if rng.random() < 0.1 else str(_uuid(rng)).encode()
            messages.append(Outgoing(key, make(rng), None, kind))
    rng.shuffle(messages)
    return messages


def over_limit(count: int, seed: int) -> list[Outgoing]:
    """Messages the broker must refuse: larger than its max.message.bytes."""
    rng = random.Random(seed)
    return [
        Outgoing(str(_uuid(rng)).encode(), rng.randbytes(OVER_LIMIT_BYTES), None, "over_limit")
        for _ in range(count)
    ]


def valid_mix(count: int, seed: int) -> list[Outgoing]:
    """Valid requests in turn: this project's envelope, the original OmniNode one
    (`ORIGINAL`), this project's earlier envelope_version "1", and this project's with an
    empty key (the value is the request; the key only orders a workflow's messages)."""
    rng = random.Random(seed)
    messages = []
    for index in range(count):
        workflow_id = _uuid(rng)
        content = f"# request {index}\nprint({index})\n"
        ours = build_request(workflow_id, environment=ENVIRONMENT, content=content)
        key = str(workflow_id).encode()
        shape = index % 4
        if shape == 0:
            messages.append(Outgoing(key, ours, workflow_id, "valid"))
        elif shape == 1:
            messages.append(
                Outgoing(key, original_envelope(workflow_id, content), workflow_id, ORIGINAL)
            )
        elif shape == 2:
            earlier = {**json.loads(ours), "envelope_version": "1", "event_version": "1"}
            messages.append(Outgoing(key, _json(earlier), workflow_id, "valid_version_1"))
        else:
            messages.append(Outgoing(rng.choice([b"", None]), ours, workflow_id, "valid_empty_key"))
    return messages


def interleave(first: list[Outgoing], second: list[Outgoing], seed: int) -> list[Outgoing]:
    mixed = [*first, *second]
    random.Random(seed).shuffle(mixed)
    return mixed
