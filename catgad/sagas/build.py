"""The `sagas:` section, from checked YAML to SagaDef (CEL compiled, durations parsed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from catgad.aggregates.payload import PayloadSchema
from catgad.config.loader import Path
from catgad.reactors.build import Cel, cel_map
from catgad.reactors.durations import parse_duration
from catgad.sagas.model import AwaitDef, CompensationDef, RetryPolicy, SagaDef, StepDef

Located = Callable[[Path], Any]
Validator = Callable[[dict[str, Any]], PayloadSchema]


def build_sagas(
    raw: Mapping[str, Any], cel: Cel, where: Located, validator: Validator
) -> dict[str, SagaDef]:
    """Every saga of the section; `cel` compiles (and reports) an expression at a path."""
    out: dict[str, SagaDef] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            continue
        base: Path = ("sagas", name)
        start = spec.get("start") or {}
        retry = spec.get("retry") or {}
        out[name] = SagaDef(
            name=name,
            steps=[
                _step(index, step, (*base, "steps", index), cel)
                for index, step in enumerate(spec.get("steps") or [])
            ],
            compensate={
                event: CompensationDef(
                    event,
                    comp["command"],
                    cel_map(comp.get("data") or {}, (*base, "compensate", event, "data"), cel),
                )
                for event, comp in (spec.get("compensate") or {}).items()
            },
            start_event=start.get("event"),
            start_id=cel(start["id"], (*base, "start", "id")) if "id" in start else None,
            schema=validator(spec["schema"]) if isinstance(spec.get("schema"), dict) else None,
            timeout=parse_duration(spec["timeout"]) if "timeout" in spec else None,
            retry=RetryPolicy(
                attempts=int(retry.get("attempts", 3)),
                backoff=parse_duration(retry.get("backoff", 1.0)),
            ),
            description=spec.get("description"),
            where=where(base),
            tests=[
                (item, where((*base, "tests", index)))
                for index, item in enumerate(spec.get("tests") or [])
                if isinstance(item, dict)
            ],
        )
    return out


def _step(index: int, raw: dict[str, Any], path: Path, cel: Cel) -> StepDef:
    awaits = raw.get("await")
    return StepDef(
        index=index,
        name=raw["name"],
        command=raw["command"],
        data=cel_map(raw.get("data") or {}, (*path, "data"), cel),
        awaits=_await(awaits, (*path, "await"), cel) if isinstance(awaits, dict) else None,
        compensate_none=raw.get("compensate") == "none",
    )


def _await(raw: dict[str, Any], path: Path, cel: Cel) -> AwaitDef:
    return AwaitDef(
        success=_types(raw.get("success")),
        failure=_types(raw.get("failure")),
        match=cel(raw["match"], (*path, "match")) if "match" in raw else None,
        timeout=parse_duration(raw["timeout"]) if "timeout" in raw else None,
    )


def _types(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
