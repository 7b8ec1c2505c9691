"""What `catgad validate` says about upcasters: gaps, steps past the version, handlers, CEL."""

from __future__ import annotations

from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.errors import ConfigError
from tests.evolution.configs import write


def issues(tmp_path: Path, old: str, new: str) -> list[str]:
    """The issues of the version-3 customer config with `old` replaced by `new`."""
    text = write(tmp_path, 3, "memory").read_text()
    assert old in text, old
    path = tmp_path / "c.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def test_the_v3_config_is_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 3, "memory"), env={})
    steps = config.events["CustomerRegistered"].upcasters
    assert sorted(steps) == [1, 2]
    assert steps[1].rename == {"mail": "email"} and steps[1].defaults == {"tier": "basic"}
    assert steps[1].set["vip"].source == "data.tier == 'gold' || size(data.email) > 40"
    assert steps[2].handler == "names" and steps[2].where is not None


def test_a_missing_step_is_a_gap(tmp_path: Path) -> None:
    assert issues(tmp_path, "      2: {handler: names}\n", "") == [
        "events.CustomerRegistered.upcasters: missing upcaster 2 -> 3: events stored at "
        "version 2 could not be read as version 3 ({} keeps the data)"
    ]


def test_a_step_at_or_past_the_version(tmp_path: Path) -> None:
    assert issues(tmp_path, "      1: {rename: {town: city}, remove: [zip]}", "      2: {}") == [
        "events.CustomerMoved.upcasters: missing upcaster 1 -> 2: events stored at version 1 "
        "could not be read as version 2 ({} keeps the data)",
        "events.CustomerMoved.upcasters['2']: CustomerMoved is at version 2, so its upcasters go "
        "from 1 to 1",
    ]


def test_upcasters_on_a_version_1_event(tmp_path: Path) -> None:
    got = issues(tmp_path, "  CustomerMoved:\n    version: 2\n", "  CustomerMoved:\n")
    assert got == [
        "events.CustomerMoved.upcasters['1']: CustomerMoved is at version 1: there is nothing "
        "to upcast to"
    ]


def test_an_unknown_or_webhook_handler(tmp_path: Path) -> None:
    assert issues(tmp_path, "{handler: names}", "{handler: name}") == [
        "events.CustomerRegistered.upcasters['2'].handler: unknown handler 'name' "
        "(did you mean 'names'?)"
    ]
    webhook = "    kind: webhook\n    url: http://localhost:9/x\n"
    assert issues(
        tmp_path, "    kind: plugin\n    entry_point: split-customer-name\n", webhook
    ) == [
        "events.CustomerRegistered.upcasters['2'].handler: upcasters run on every read, so only "
        "a plugin can be one; 'names' is a webhook"
    ]


def test_a_handler_step_does_the_whole_step(tmp_path: Path) -> None:
    got = issues(tmp_path, "{handler: names}", "{handler: names, remove: [x]}")
    assert got == [
        "events.CustomerRegistered.upcasters['2']: a handler upcaster does the whole step; "
        "leave out rename, defaults, set and remove"
    ]


def test_cel_in_set_compiles_and_reads_data_or_event(tmp_path: Path) -> None:
    got = issues(tmp_path, "data.tier == 'gold' ||", "state.tier == 'gold' ||")
    assert got == [
        "events.CustomerRegistered.upcasters['1'].set.vip: unknown variable 'state' "
        "(known here: data, event)"
    ]
    got = issues(tmp_path, "data.tier == 'gold' ||", "data.tier == ||")
    assert len(got) == 1 and got[0].startswith(
        "events.CustomerRegistered.upcasters['1'].set.vip: invalid CEL"
    )


def test_steps_are_keyed_by_version_numbers(tmp_path: Path) -> None:
    got = issues(tmp_path, "      1: {rename: {town: city}", "      one: {rename: {town: city}")
    assert got[0] == (
        "events.CustomerMoved.upcasters: invalid name 'one': an upcaster is keyed by the "
        "version it upgrades from: 1, 2, ..."
    )


def test_a_past_event_in_a_scenario_cannot_be_newer(tmp_path: Path) -> None:
    text = write(tmp_path, 3, "memory").read_text() + (
        "tests:\n"
        "  - name: old move\n"
        "    given: [{type: CustomerMoved, version: 3, data: {customer_id: c1, town: X}}]\n"
        "    when: {command: Move, data: {customer_id: c1, city: Y}}\n"
        "    then: {state: {city: Y}}\n"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [f"{i.path}: {i.message}" for i in caught.value.issues] == [
        "tests[0].given[0].version: CustomerMoved is at version 2; a past event cannot be newer"
    ]


def test_a_webhook_secret_that_is_not_base64(tmp_path: Path) -> None:
    webhook = "    kind: webhook\n    url: http://localhost:9/x\n    secret: whsec_not*base64\n"
    got = issues(tmp_path, "    kind: plugin\n    entry_point: split-customer-name\n", webhook)
    assert (
        "handlers.names.secret: a whsec_ secret is base64 after its prefix; this one is not "
        in (got[-1])
    )
