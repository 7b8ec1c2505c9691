"""The `processes:` section, from checked YAML to ProcessDef (CEL compiled, durations parsed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from catgad.config.loader import Path
from catgad.processes.model import ApprovalDef, ProcessDef, SendDef, StateDef, TimerDef, Transition
from catgad.reactors.build import Cel, cel_map
from catgad.reactors.durations import parse_duration

Located = Callable[[Path], Any]


def build_processes(raw: Mapping[str, Any], cel: Cel, where: Located) -> dict[str, ProcessDef]:
    out: dict[str, ProcessDef] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            continue
        base: Path = ("processes", name)
        start = spec["start"]
        out[name] = ProcessDef(
            name=name,
            start=[start] if isinstance(start, str) else list(start),
            id=cel(spec["id"], (*base, "id")),
            initial=spec["initial"],
            states={
                state: _state(state, raw_state or {}, (*base, "states", state), cel)
                for state, raw_state in (spec.get("states") or {}).items()
            },
            data=cel_map(spec.get("data") or {}, (*base, "data"), cel),
            description=spec.get("description"),
            where=where(base),
            tests=[
                (item, where((*base, "tests", index)))
                for index, item in enumerate(spec.get("tests") or [])
                if isinstance(item, dict)
            ],
        )
    return out


def _state(name: str, raw: dict[str, Any], path: Path, cel: Cel) -> StateDef:
    after = raw.get("after")
    approval = raw.get("approval")
    return StateDef(
        name=name,
        on=[
            Transition(
                event=item["event"],
                goto=item["goto"],
                when=cel(item["if"], (*path, "on", index, "if")) if "if" in item else None,
                set=cel_map(item.get("set") or {}, (*path, "on", index, "set"), cel),
                index=index,
            )
            for index, item in enumerate(raw.get("on") or [])
        ],
        send=[
            SendDef(
                item["command"], cel_map(item.get("data") or {}, (*path, "send", i, "data"), cel)
            )
            for i, item in enumerate(raw.get("send") or [])
        ],
        after=TimerDef(parse_duration(after["in"]), after["goto"]) if after else None,
        approval=ApprovalDef(
            approval.get("scope", "approve"), approval["approve"], approval["reject"]
        )
        if approval
        else None,
        final=bool(raw.get("final", False)),
    )
