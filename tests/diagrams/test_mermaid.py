"""The diagrams as a person gets them: Mermaid text that the real Mermaid parser (the npm
package, under Node) accepts, showing every state, transition, guard, timer, approval,
command and end; a saga's steps and compensations; an instance's place highlighted. The
examples' diagrams are checked in (golden/) and must not change unnoticed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from catgad.app.load import load_config
from catgad.cli.diagram import diagram
from catgad.diagrams.mermaid import label
from catgad.http import create_app
from catgad.processes.diagram import process_diagram
from catgad.processes.section import PROCESSES
from catgad.runtime import Runtime
from catgad.sagas.diagram import emits, saga_diagram
from catgad.sagas.section import SAGAS
from catgad.store.memory import MemoryStore
from tests.handlers.servers import ServerError, npm_install
from tests.helpers.daemon import REPO
from tests.support.ci import needed

HERE = Path(__file__).parent
EXAMPLES = REPO / "config" / "examples"
GOLDEN = HERE / "golden"


@pytest.fixture(scope="session")
def mermaid_modules() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "catgad-tests"
    try:
        return npm_install(cache, HERE / "mermaid", marker="mermaid")
    except ServerError as exc:
        needed("Node.js and npm (the Mermaid parser)", str(exc))


def parse(modules: Path, texts: dict[str, str], folder: Path) -> dict[str, dict[str, object]]:
    """Each text through mermaid.parse; its verdict by name."""
    files = []
    for name, text in texts.items():
        path = folder / f"{name}.mmd"
        path.write_text(text)
        files.append(str(path))
    script = modules.parent / "check.mjs"  # ES modules resolve beside the script, not NODE_PATH
    shutil.copyfile(HERE / "mermaid" / "check.mjs", script)
    done = subprocess.run(
        ["node", str(script), *files],
        cwd=modules.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    verdicts = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(verdicts) == len(files), done.stdout + done.stderr
    return {Path(str(v["file"])).stem: v for v in verdicts}


def every_diagram() -> dict[str, str]:
    texts: dict[str, str] = {}
    for path in sorted(p for p in EXAMPLES.glob("*.yaml") if ".tests." not in p.name):
        config = load_config(path, env={})
        for name, process in PROCESSES.of(config).items():
            texts[f"{path.stem}.{name}"] = process_diagram(process)
            states = list(process.states)
            texts[f"{path.stem}.{name}.instance"] = process_diagram(
                process, current=states[-1], visited=states[:2]
            )
        for name, saga in SAGAS.of(config).items():
            texts[f"{path.stem}.{name}"] = saga_diagram(saga, emits(config))
            steps = [s.name for s in saga.steps]
            texts[f"{path.stem}.{name}.instance"] = saga_diagram(
                saga, emits(config), current=steps[1], visited=steps[:1]
            )
            texts[f"{path.stem}.{name}.failed"] = saga_diagram(
                saga, emits(config), failed=steps[-1], visited=steps[:-1]
            )
    return texts


def test_the_real_mermaid_parser_accepts_every_diagram(
    mermaid_modules: Path, tmp_path: Path
) -> None:
    texts = every_diagram()
    assert len(texts) >= 5
    verdicts = parse(mermaid_modules, texts, tmp_path)
    for name, verdict in verdicts.items():
        assert verdict["ok"], (name, verdict, texts[name])
        expected = "stateDiagram" if "Fulfilment" in name else "flowchart-v2"
        assert verdict["type"] == expected, name


def test_the_parser_check_can_fail(mermaid_modules: Path, tmp_path: Path) -> None:
    verdicts = parse(mermaid_modules, {"broken": "stateDiagram-v2\n  a --> : oops\n"}, tmp_path)
    assert verdicts["broken"]["ok"] is False


def test_a_process_diagram_shows_the_whole_machine() -> None:
    config = load_config(EXAMPLES / "fulfilment.yaml", env={})
    text = process_diagram(PROCESSES.of(config)["Fulfilment"])
    for line in (
        "    [*] --> awaiting_payment: OrderPlaced",
        "    awaiting_payment --> review: PaymentCaptured [process.data.total #62;= 100000]",
        "    awaiting_payment --> expired: after 1d",
        "    review: waits for approval (scope approve)",
        "    review --> shipping: approved",
        "    review --> refunding: rejected",
        "    review --> refunding: after 2d",
        "    shipping: sends BookShipment",
        "    done --> [*]",
    ):
        assert line in text.splitlines(), line
    for state in PROCESSES.of(config)["Fulfilment"].states:
        assert f"    {state} " in text or f" {state}:" in text or f"--> {state}" in text


def test_labels_cannot_break_out() -> None:
    assert (
        label('a "b"; c # d <e> {f} | `g`')
        == "a #34;b#34;#59; c #35; d #60;e#62; #123;f#125; #124; #96;g#96;"
    )


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.mmd")), ids=lambda p: p.stem)
def test_the_examples_diagrams_are_as_checked_in(golden: Path) -> None:
    example, name = golden.stem.split(".")
    config = load_config(EXAMPLES / f"{example}.yaml", env={})
    text = (
        process_diagram(PROCESSES.of(config)[name])
        if name in PROCESSES.of(config)
        else saga_diagram(SAGAS.of(config)[name], emits(config))
    )
    assert text == golden.read_text(), f"regenerate with: catgad diagram {example}.yaml {name}"


async def test_the_diagram_endpoints(tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "order-saga.yaml", env={})
    async with Runtime.start(config, store=MemoryStore()) as runtime:
        order = {"order_id": "o1", "sku": "b", "qty": 1, "amount": 5, "address": "x"}
        await runtime.reactor("sagas").begin(
            "PlaceOrder", order
        )  # not driven here: at its first step
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://catgad") as client:
            plain = await client.get("/sagas/PlaceOrder/diagram")
            assert plain.status_code == 200
            assert plain.headers["content-type"].startswith("text/vnd.mermaid")
            assert plain.text == saga_diagram(SAGAS.of(config)["PlaceOrder"], emits(config))
            placed = await client.get("/sagas/PlaceOrder/diagram", params={"instance": "o1"})
            assert "    class reserve current" in placed.text.splitlines()
            assert (
                await client.get("/sagas/PlaceOrder/diagram?instance=nobody")
            ).status_code == 404
            assert (await client.get("/sagas/PlaceOrder/diagram?format=png")).status_code == 400
            assert (await client.get("/processes/Nope/diagram")).status_code == 404


def test_the_processes_page_shows_the_fulfilment_diagram_as_it_is() -> None:
    page = (REPO / "docs" / "processes.md").read_text()
    golden = (GOLDEN / "fulfilment.Fulfilment.mmd").read_text()
    assert f"```mermaid\n{golden}```" in page


def docs_diagrams() -> dict[str, str]:
    """Every ```mermaid block of README.md and docs/, by page and place."""
    texts: dict[str, str] = {}
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for i, block in enumerate(page.read_text().split("```mermaid\n")[1:]):
            texts[f"{page.stem}-{i}"] = block.split("```", 1)[0]
    return texts


def test_the_real_mermaid_parser_accepts_the_docs_diagrams(
    mermaid_modules: Path, tmp_path: Path
) -> None:
    """The README's architecture picture and the docs' diagrams, as GitHub would render them."""
    texts = docs_diagrams()
    assert "README-0" in texts, "the README's architecture picture went missing"
    verdicts = parse(mermaid_modules, texts, tmp_path)
    for name, verdict in verdicts.items():
        assert verdict["ok"], (name, verdict, texts[name])


def svg_texts(text: str) -> list[str]:
    """The words a person reads in an SVG: its <text> elements, in order."""
    root = ElementTree.fromstring(text)
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.svg")), ids=lambda p: p.stem)
def test_the_svg_pictures_show_what_the_checked_in_ones_show(golden: Path) -> None:
    """Drawn by Graphviz on the server; the layout may move between Graphviz versions, what
    it says may not: every state (step), label and command, as in the checked-in picture."""
    if shutil.which("dot") is None:
        needed("Graphviz's dot", "it is not installed (apt install graphviz)")
    example, name = golden.stem.split(".")
    config = load_config(EXAMPLES / f"{example}.yaml", env={})
    text = diagram(config, name, "svg")
    assert sorted(svg_texts(text)) == sorted(svg_texts(golden.read_text()))
    if name in PROCESSES.of(config):
        for state in PROCESSES.of(config)[name].states:
            assert state in svg_texts(text), state
    else:
        for step in SAGAS.of(config)[name].steps:
            assert step.name in svg_texts(text) and step.command in svg_texts(text)


async def test_the_diagram_endpoints_draw_svg(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        needed("Graphviz's dot", "it is not installed (apt install graphviz)")
    config = load_config(EXAMPLES / "fulfilment.yaml", env={})
    async with Runtime.start(config, store=MemoryStore()) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://catgad") as client:
            answer = await client.get("/processes/Fulfilment/diagram", params={"format": "svg"})
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("image/svg+xml")
            assert "awaiting_payment" in svg_texts(answer.text)
