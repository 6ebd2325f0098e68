"""`bridge-dagster backfill`: re-aggregate a range of reducer hours, run by the Dagster daemon.

The command only asks: it calls the running webserver's GraphQL API to launch an asset
backfill of the hourly reducer assets (and `reducer_bridge_state`), and with --wait follows
the backfill until it ends. The daemon submits the runs; each hourly asset takes the whole
range in one run (BackfillPolicy.single_run).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
import httpx
from tqdm import tqdm

from bridge_dagster.reducer.aggregate import HOURLY_TABLE_NAMES
from bridge_dagster.reducer.partitions import KEY_FORMAT

# Where `bridge-dagster dev` serves the Dagster UI.
DEFAULT_URL = "http://127.0.0.1:3000"
URL_VARIABLE = "DAGSTER_WEBSERVER_URL"
EXAMPLE_KEY = "2026-11-30-13:00"
BRIDGE_STATE = "reducer_bridge_state"
BACKFILL_TAGS = {"bridge/kind": "reducer_backfill"}
REQUEST_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 2.0
SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}
ENDED_BADLY = {"COMPLETED_FAILED", "FAILED", "CANCELED"}

ASSET_NODES_QUERY = """
query BackfillTargets($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    isPartitioned
    first: partitionKeyConnection(limit: 1, ascending: true) { results }
    last: partitionKeyConnection(limit: 1, ascending: false) { results }
  }
}
"""
LAUNCH_MUTATION = """
mutation LaunchReducerBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
STATUS_QUERY = """
query ReducerBackfillStatus($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsMaterialized
            numPartitionsFailed
          }
          ... on UnpartitionedAssetStatus { assetKey { path } materialized failed }
        }
      }
      runs { runId status }
    }
    ... on Error { message }
  }
}
"""


@dataclass(frozen=True)
class Progress:
    """One look at a backfill: its status, asset partitions done, and its runs."""

    status: str
    targeted: int
    materialized: int
    failed: dict[str, int]
    runs: list[dict[str, str]]
    error: str | None

    @property
    def ended(self) -> bool:
        return self.status in SUCCEEDED | ENDED_BADLY


@click.command(
    epilog="""\b
Examples:
  bridge-dagster backfill --from 2026-11-30-00:00 --to 2026-11-30-12:00
  bridge-dagster backfill --from 2026-11-30-00:00 --to 2026-11-30-12:00 --wait
  bridge-dagster backfill --from 2026-11-30-07:00 --to 2026-11-30-07:00 --wait --timeout 120
  bridge-dagster backfill --from 2026-11-01-00:00 --to 2026-11-30-23:00 --url http://dagster:3000

\b
Hours are UTC partition keys, both ends included. The backfill shows in the UI under
Runs → Backfills; Ctrl-C during --wait stops only the waiting, not the backfill.
"""
)
@click.option(
    "--from",
    "first",
    required=True,
    metavar="YYYY-MM-DD-HH:MM",
    help="First hour to re-aggregate (UTC, on the hour).",
)
@click.option(
    "--to",
    "last",
    required=True,
    metavar="YYYY-MM-DD-HH:MM",
    help="Last hour to re-aggregate, included (UTC, on the hour).",
)
@click.option(
    "--url",
    envvar=URL_VARIABLE,
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="The Dagster webserver (the UI's address); its daemon runs the backfill.",
)
@click.option(
    "--wait", is_flag=True, help="Follow the backfill until it ends; exit 1 unless it succeeded."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --wait waits before giving up (the backfill itself goes on).",
)
def backfill(first: str, last: str, url: str, wait: bool, timeout: float) -> None:
    """Re-aggregate a range of reducer hours: a Dagster backfill the daemon runs.

    Asks the running Dagster webserver to backfill the hourly reducer assets
    (reducer_namespace_hourly, …_content_type_hourly, …_size_bucket_hourly,
    …_throughput_minutely, …_workflow_projection) over the hours --from to --to, then
    reducer_bridge_state. The daemon runs it; each asset takes the range in one run.
    Prints the backfill id and its page in the UI.
    """
    start, end = _hour_range(first, last)
    base = _base_url(url)
    with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
        _check_targets(client, base, start, end)
        backfill_id = _launch(client, base, start, end)
        hours = _hours_between(start, end)
        click.echo(
            f"Backfill {backfill_id}: {len(HOURLY_TABLE_NAMES)} hourly reducer assets over"
            f" {hours} {'hour' if hours == 1 else 'hours'} ({start} to {end}), then {BRIDGE_STATE};"
            " the Dagster daemon runs it."
        )
        click.echo(f"  {backfill_page(base, backfill_id)}")
        if wait:
            _wait(client, base, backfill_id, timeout)


# --- the range -----------------------------------------------------------------------------


def _hour_range(first: str, last: str) -> tuple[str, str]:
    """The two partition keys, checked: well formed, on the hour, in order."""
    start, end = _hour(first, "--from"), _hour(last, "--to")
    if start > end:
        raise click.UsageError(
            f"--from {_key(start)} is after --to {_key(end)}; the range runs from the earlier"
            " hour to the later one, so swap them"
        )
    return _key(start), _key(end)


def _hour(value: str, option: str) -> datetime:
    try:
        moment = datetime.strptime(value.strip(), KEY_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an hour; write it as YYYY-MM-DD-HH:MM in UTC, e.g. {EXAMPLE_KEY}",
            param_hint=option,
        ) from None
    if moment.minute:
        raise click.BadParameter(
            f"{value!r} is not on the hour; the reducer's partitions are whole UTC hours, so"
            f" pass {_key(moment.replace(minute=0))}",
            param_hint=option,
        )
    return moment


def _key(moment: datetime) -> str:
    return moment.strftime(KEY_FORMAT)


def _hours_between(start: str, end: str) -> int:
    first = datetime.strptime(start, KEY_FORMAT)
    last = datetime.strptime(end, KEY_FORMAT)
    return int((last - first).total_seconds() // 3600) + 1


def _asset_keys() -> list[str]:
    return [*HOURLY_TABLE_NAMES, BRIDGE_STATE]


# --- GraphQL -------------------------------------------------------------------------------


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{url!r} is not a web address; pass the Dagster UI's, e.g. {DEFAULT_URL}",
            param_hint="--url",
        )
    return url


def backfill_page(base: str, backfill_id: str) -> str:
    """The backfill's page in the Dagster UI (this version's route: /runs/b/<id>)."""
    return f"{base}/runs/b/{backfill_id}"


def _graphql(
    client: httpx.Client, base: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """`data` of a GraphQL answer; every way the call can fail becomes one clear line."""
    try:
        response = client.post("/graphql", json={"query": query, "variables": variables})
    except httpx.ConnectError:
        raise click.ClickException(
            f"no Dagster webserver at {base}; start `bridge-dagster dev` or pass --url"
            f" (or set {URL_VARIABLE})"
        ) from None
    except httpx.TimeoutException:
        raise click.ClickException(
            f"the Dagster webserver at {base} did not answer within {REQUEST_TIMEOUT_S:g} s;"
            " check that it is up (its UI loads) and try again"
        ) from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {base} ({exc}); check --url") from None
    body = _json(response)
    if body is None or not isinstance(body.get("data"), dict):
        errors = "; ".join(e.get("message", "?") for e in (body or {}).get("errors") or [])
        raise click.ClickException(
            f"{base}/graphql answered HTTP {response.status_code} without a GraphQL result"
            f"{f' ({errors})' if errors else ''}; is --url the Dagster UI's address, and is"
            " this bridge-dagster's Dagster version?"
        )
    return body["data"]


def _json(response: httpx.Response) -> dict[str, Any] | None:
    # A PythonError comes back as HTTP 500 with a normal GraphQL body, so the status alone
    # does not tell a failed call from a failure the body explains.
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _check_targets(client: httpx.Client, base: str, start: str, end: str) -> None:
    """Every reducer asset is defined there, and the range lies within the hourly partitions.

    The server would clip a range that runs past the partitions without a word, so it is
    checked against the first and newest hour the webserver itself knows.
    """
    keys = [{"path": [name]} for name in _asset_keys()]
    nodes = _graphql(client, base, ASSET_NODES_QUERY, {"keys": keys})["assetNodes"]
    found = {node["assetKey"]["path"][-1]: node for node in nodes}
    missing = [name for name in _asset_keys() if name not in found]
    if missing:
        raise click.ClickException(
            f"the Dagster webserver at {base} has no asset {', '.join(missing)}; it must serve"
            " the bridge_dagster code location (if it is still loading, wait until the UI's"
            " Deployment page shows it loaded)"
        )
    hourly = [found[name] for name in HOURLY_TABLE_NAMES]
    earliest = max(_only(node["first"]) for node in hourly)
    newest = min(_only(node["last"]) for node in hourly)
    if start < earliest:
        raise click.UsageError(
            f"--from {start} is before the first reducer hour, {earliest}"
            " (REDUCER_PARTITIONS_START); pass that hour or a later one"
        )
    if end > newest:
        raise click.UsageError(
            f"--to {end} is after the newest reducer hour, {newest} (the hour in progress);"
            " pass that hour or an earlier one"
        )


def _only(connection: dict[str, list[str]] | None) -> str:
    results = (connection or {}).get("results") or []
    if not results:
        raise click.ClickException(
            "the hourly reducer assets have no partitions yet; check REDUCER_PARTITIONS_START"
            " on the webserver's side"
        )
    return results[0]


def _launch(client: httpx.Client, base: str, start: str, end: str) -> str:
    hourly = [
        {"assetKey": {"path": [name]}, "partitions": {"range": {"start": start, "end": end}}}
        for name in HOURLY_TABLE_NAMES
    ]
    params = {
        # An unpartitioned asset in the same backfill: recomputed once, after the hours.
        "partitionsByAssets": [*hourly, {"assetKey": {"path": [BRIDGE_STATE]}}],
        "title": f"reducer {start} to {end}",
        "description": "launched by `bridge-dagster backfill`",
        "tags": [{"key": k, "value": v} for k, v in BACKFILL_TAGS.items()],
    }
    result = _graphql(client, base, LAUNCH_MUTATION, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] == "LaunchBackfillSuccess":
        return result["backfillId"]
    raise click.ClickException(
        f"Dagster refused the backfill ({result['__typename']}: {_message(result)})"
    )


def _message(result: dict[str, Any]) -> str:
    if result.get("message"):
        return result["message"].strip().splitlines()[-1]
    errors = [e["message"] for e in result.get("errors") or []]
    return "; ".join(errors) or "no message"


# --- waiting -------------------------------------------------------------------------------


def progress(client: httpx.Client, base: str, backfill_id: str) -> Progress:
    found = _graphql(client, base, STATUS_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
    if found["__typename"] != "PartitionBackfill":
        raise click.ClickException(f"cannot follow backfill {backfill_id}: {_message(found)}")
    statuses = (found.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
    targeted = materialized = 0
    failed: dict[str, int] = {}
    for item in statuses:
        name = item["assetKey"]["path"][-1]
        if item["__typename"] == "AssetPartitionsStatusCounts":
            targeted += item["numPartitionsTargeted"]
            materialized += item["numPartitionsMaterialized"]
            bad = item["numPartitionsFailed"]
        else:
            targeted += 1
            materialized += int(item["materialized"])
            bad = int(item["failed"])
        if bad:
            failed[name] = bad
    error = (found.get("error") or {}).get("message")
    return Progress(found["status"], targeted, materialized, failed, found["runs"], error)


def _wait(client: httpx.Client, base: str, backfill_id: str, timeout: float) -> None:
    started = time.monotonic()
    try:
        seen = _follow(client, base, backfill_id, started + timeout)
    except KeyboardInterrupt:
        click.echo(f"Stopped waiting; the backfill goes on: {backfill_page(base, backfill_id)}")
        raise SystemExit(130) from None
    _report(base, backfill_id, seen, time.monotonic() - started, timeout)


def _follow(client: httpx.Client, base: str, backfill_id: str, deadline: float) -> Progress:
    """Poll until the backfill ends or `deadline` passes; the last look at it."""
    seen = progress(client, base, backfill_id)
    # disable=None: tqdm draws the bar only on a terminal.
    bar = tqdm(total=seen.targeted, desc=f"backfill {backfill_id}", unit="part", disable=None)
    with bar:
        while True:
            bar.update(seen.materialized + sum(seen.failed.values()) - bar.n)
            bar.set_postfix_str(f"{seen.status.lower()}, {_runs(seen.runs)}")
            if seen.ended or time.monotonic() > deadline:
                return seen
            time.sleep(POLL_INTERVAL_S)
            seen = progress(client, base, backfill_id)


def _runs(runs: Sequence[dict[str, str]]) -> str:
    return f"{len(runs)} run" if len(runs) == 1 else f"{len(runs)} runs"


def _report(base: str, backfill_id: str, seen: Progress, seconds: float, timeout: float) -> None:
    page = backfill_page(base, backfill_id)
    if seen.status in SUCCEEDED and not seen.failed:
        click.echo(
            f"Backfill {backfill_id} completed in {seconds:.1f} s: {_runs(seen.runs)},"
            f" {seen.materialized} of {seen.targeted} asset partitions materialized"
        )
        return
    if not seen.ended:
        hint = "" if seen.runs else "no run has started yet, so check that the daemon is up; "
        raise click.ClickException(
            f"backfill {backfill_id} is still {seen.status} after {timeout:g} s (--timeout),"
            f" {seen.materialized} of {seen.targeted} asset partitions done; it goes on in the"
            f" daemon: {hint}follow it at {page}, or wait longer with a larger --timeout"
        )
    raise click.ClickException(_failure(base, backfill_id, seen))


def _failure(base: str, backfill_id: str, seen: Progress) -> str:
    parts = [f"backfill {backfill_id} ended {seen.status}"]
    if seen.failed:
        parts.append(
            "failed asset partitions: "
            + ", ".join(f"{name} {count}" for name, count in sorted(seen.failed.items()))
        )
    if seen.error:
        parts.append(f"daemon error: {seen.error.strip().splitlines()[-1]}")
    bad_runs = [run["runId"] for run in seen.runs if run["status"] in {"FAILURE", "CANCELED"}]
    where = f"{base}/runs/{bad_runs[0]}" if bad_runs else backfill_page(base, backfill_id)
    return "; ".join(parts) + f"; see why at {where}, then launch it again once fixed"
