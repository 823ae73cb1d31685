"""sync_agent.conventions: one duration syntax for options and Sync specs, one time format."""

from __future__ import annotations

import re

import pytest

from sync_agent import conventions, errors
from sync_agent.errors import ConfigError


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("10m", 600), ("1h", 3600), ("500ms", 0.5), ("45", 45), (" 2.5m ", 150),
])
def test_durations_in_every_documented_unit(text: str, seconds: float) -> None:
    assert conventions.parse_duration(text, "--timeout") == seconds


def test_a_duration_that_is_not_one_names_the_option_and_the_forms() -> None:
    with pytest.raises(ConfigError) as caught:
        conventions.parse_duration("soon", "--lock-timeout")
    assert str(caught.value) == "--lock-timeout 'soon': use a duration such as 90s, 10m or 1h"
    assert errors.kind(caught.value) is errors.Refused


def test_zero_is_a_timeout_but_not_an_interval() -> None:
    assert conventions.parse_duration("0s", "--lock-timeout") == 0
    with pytest.raises(ConfigError, match=r"spec.interval '0s': must be more than zero"):
        conventions.parse_duration("0s", "spec.interval", positive=True)


def test_utc_now_is_written_as_kubernetes_writes_times() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", conventions.utc_now())


def test_managed_labels_are_a_fresh_dict_each_time() -> None:
    labels = conventions.managed_labels({conventions.SYNC_LABEL: "shop"})
    labels["extra"] = "x"
    assert conventions.managed_labels() == {"app.kubernetes.io/managed-by": "gitops-restore"}
    assert labels[conventions.SYNC_LABEL] == "shop"
