"""The reference docs stay complete: every hook and event is documented and tested, config.md is current."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import re
from pathlib import Path

import pytest
from tnode import events, hookspecs
from tnode.events import CORE_EVENTS, Event, Request

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = ".venv/bin/tnode config reference -o docs/config.md"


def section(doc: str, name: str) -> str:
    """The text under the heading `` `name` `` up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) `{re.escape(name)}`\s*$", doc, re.M)
    if match is None:
        return ""
    level = len(match.group(1))
    end = re.search(rf"^#{{1,{level}}} ", doc[match.end():], re.M)
    return doc[match.end(): match.end() + end.start()] if end else doc[match.end():]


@functools.cache
def sources_of_tests() -> str:
    """Every file under tests/ except this one (whose name lists would make every check pass)."""
    me = Path(__file__).resolve()
    return "\n".join(p.read_text(errors="replace") for p in sorted((ROOT / "tests").rglob("*.py")) if p.resolve() != me)


def plugin_events() -> list[type[Event]]:
    """Event classes declared in built-in plugins' ``events.py`` modules."""
    found: list[type[Event]] = []
    for path in sorted((ROOT / "plugins").glob("*/events.py")):
        module = importlib.import_module(f"tnode.plugins.{path.parent.name}.events")
        found.extend(obj for obj in vars(module).values()
                     if inspect.isclass(obj) and issubclass(obj, Event) and obj.__module__ == module.__name__)
    return found


ALL_EVENTS = [*CORE_EVENTS, *plugin_events()]


# --------------------------------------------------------------------------- hooks
def test_hookspecs_tuple_lists_every_hook() -> None:
    declared = sorted(name for name, obj in vars(hookspecs).items() if name.startswith("tnode_") and callable(obj))
    assert sorted(hookspecs.HOOKSPECS) == declared


@pytest.mark.parametrize("hook", hookspecs.HOOKSPECS)
def test_every_hook_is_documented_with_its_parameters(hook: str) -> None:
    text = section((DOCS / "hooks.md").read_text(), hook)
    assert text, f"docs/hooks.md has no section for {hook}"
    for param in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f"`{param}`" in text, f"docs/hooks.md: {hook} does not document its parameter {param!r}"


@pytest.mark.parametrize("hook", hookspecs.HOOKSPECS)
def test_every_hook_has_a_test(hook: str) -> None:
    if not re.search(rf"\b{hook}\b", sources_of_tests()):
        pytest.fail(f"no test under tests/ uses the hook {hook}")


# --------------------------------------------------------------------------- events
def test_core_events_tuple_lists_every_core_event() -> None:
    declared = {obj for obj in vars(events).values()
                if inspect.isclass(obj) and issubclass(obj, Event) and obj not in (Event, Request)}
    assert declared == set(CORE_EVENTS)


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda cls: cls.__name__)
def test_every_event_is_frozen_and_says_who_emits_it(event: type[Event]) -> None:
    assert dataclasses.is_dataclass(event) and event.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert re.search(r"\b(emitted|sent) by\b", event.__doc__ or "", re.I), f"{event.__name__}: say who emits it"


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda cls: cls.__name__)
def test_every_event_is_documented_with_its_fields(event: type[Event]) -> None:
    text = section((DOCS / "events.md").read_text(), event.__name__)
    assert text, f"docs/events.md has no section for {event.__name__}"
    for f in dataclasses.fields(event):
        assert f"| `{f.name}` |" in text, f"docs/events.md: {event.__name__} does not document field {f.name!r}"


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda cls: cls.__name__)
def test_every_event_has_a_test(event: type[Event]) -> None:
    if not re.search(rf"\b{event.__name__}\b", sources_of_tests()):
        pytest.fail(f"no test under tests/ uses {event.__name__}")


# --------------------------------------------------------------------------- generated reference
def test_config_reference_is_up_to_date() -> None:
    from tnode.pluginmanager import load_plugins
    from tnode.reference import render_reference

    expected = render_reference(load_plugins(autoload_external=False).registry)
    path = DOCS / "config.md"
    actual = path.read_text() if path.exists() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True),
                                                 "docs/config.md", "generated"))[:40])
        pytest.fail(f"docs/config.md is out of date; regenerate it with `{REGENERATE}`\n{diff}")


# --------------------------------------------------------------------------- links
def slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


MY_DOCS = ["architecture.md", "hooks.md", "events.md", "plugin-authors.md", "plugin-template/README.md"]


@pytest.mark.parametrize("name", MY_DOCS)
def test_relative_links_and_anchors_resolve(name: str) -> None:
    path = DOCS / name
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        assert dest.exists(), f"docs/{name}: broken link {target}"
        if anchor and dest.is_file():
            anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), re.M)}
            assert anchor in anchors, f"docs/{name}: no heading for anchor #{anchor} in {dest.name}"
