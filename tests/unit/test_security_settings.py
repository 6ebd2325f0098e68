"""API keys, their rotation, and the guide's security variables this project refuses."""

from __future__ import annotations

import pytest

from bridge_dagster.services.api_keys import key_accepted
from bridge_dagster.settings import ConfigError, load_settings


def test_previous_keys_are_read_as_a_comma_separated_list() -> None:
    settings = load_settings({"API_KEY": "new", "API_KEY_PREVIOUS": "old, older ,"})
    assert (settings.api_key, settings.api_key_previous) == ("new", ("old", "older"))


def test_previous_keys_without_a_current_key_are_refused() -> None:
    with pytest.raises(ConfigError, match="API_KEY_PREVIOUS is set but API_KEY is not"):
        load_settings({"API_KEY_PREVIOUS": "old"})


def test_metrics_behind_a_key_need_a_key() -> None:
    with pytest.raises(ConfigError, match="METRICS_REQUIRE_API_KEY=true but API_KEY is not set"):
        load_settings({"METRICS_REQUIRE_API_KEY": "true"})
    assert load_settings(
        {"METRICS_REQUIRE_API_KEY": "true", "API_KEY": "k"}
    ).metrics_require_api_key


def test_a_metrics_switch_that_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(ConfigError, match="METRICS_REQUIRE_API_KEY='maybe' is not true or false"):
        load_settings({"METRICS_REQUIRE_API_KEY": "maybe"})


@pytest.mark.parametrize(
    ("name", "instead"),
    [
        ("JWT_SECRET", "set API_KEY instead"),
        ("JWT_EXPIRATION_HOURS", "API_KEY_PREVIOUS"),
        ("JWT_ALGORITHM", "set API_KEY instead"),
        ("API_KEY_ROTATION_ENABLED", "API_KEY_PREVIOUS"),
        ("API_KEY_ROTATION_DAYS", "API_KEY_PREVIOUS"),
        ("POSTGRES_SSL_ENABLED", "POSTGRES_SSL_MODE"),
        ("REQUIRE_HTTPS", "terminate TLS at the ingress"),
    ],
)
def test_a_guide_variable_answered_another_way_is_refused_with_what_to_do(
    name: str, instead: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: "true"})
    assert str(caught.value).startswith(f"{name} is set, but")
    assert instead in str(caught.value)
    assert str(caught.value).endswith(f"unset {name}")


def test_the_current_and_every_previous_key_are_accepted_and_nothing_else() -> None:
    accepted = ("new-key", "old-key")
    assert key_accepted("new-key", accepted)
    assert key_accepted("old-key", accepted)
    assert not key_accepted("new-ke", accepted)
    assert not key_accepted("", accepted)
    assert not key_accepted("anything", ())
