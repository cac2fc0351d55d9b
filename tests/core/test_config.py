"""node.toml validation: every configuration error class, its key path and its message."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from core_probes import Limits, ProbeConfig, probe_manager
from tnode.assembly import apply_env_overrides, load_config_file, parse_config
from tnode.config import NodeSection, collect_errors, load_table, option, read_toml
from tnode.errors import (
    ConfigError,
    ConfigErrors,
    MissingComponentError,
    MissingKeyError,
    TopologyError,
    UnknownComponentTypeError,
    UnknownKeyError,
    WrongTypeError,
)
from tnode.registry import ComponentRegistry

FILE = "/etc/tnode/node.toml"


@pytest.fixture(scope="module")
def registry() -> ComponentRegistry:
    return probe_manager()[0].registry


def errors_of(doc: dict[str, Any], registry: ComponentRegistry) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        parse_config(doc, registry, file=FILE)
    for err in info.value.errors:
        assert err.file == FILE
    return info.value.errors


def only_error(doc: dict[str, Any], registry: ComponentRegistry) -> ConfigError:
    errs = errors_of(doc, registry)
    assert len(errs) == 1, [e.render() for e in errs]
    return errs[0]


def exporter(**table: Any) -> dict[str, Any]:
    return {"exporters": {"p": {"type": "probe", **table}}}


# --------------------------------------------------------------------------- valid input
def test_valid_config_is_typed_with_defaults(registry: ComponentRegistry) -> None:
    doc = {
        "node": {"name": "n1", "netuid": 3},
        "models": {"small": {"type": "probe"}},
        "exporters": {"p": {"type": "probe", "delay_ms": 5, "model": "small", "tags": ["a"],
                            "limits": {"rate": 2}, "port": 8080}},
    }
    cfg = parse_config(doc, registry, file=FILE)
    assert (cfg.node.name, cfg.node.netuid) == ("n1", 3)
    probe = cfg.of_kind("exporter")[0]
    assert probe.key_path == "exporters.p"
    assert probe.config == ProbeConfig(delay_ms=5, model="small", tags=["a"], limits=Limits(rate=2.0), port=8080)
    assert isinstance(probe.config.limits.rate, float)


def test_components_are_ordered_by_kind(registry: ComponentRegistry) -> None:
    doc: dict[str, Any] = {"exporters": {"e": {"type": "probe"}}, "transport": {"type": "probe"},
                           "models": {"m": {"type": "probe"}}, "datasets": {"d": {"type": "probe"}},
                           "modalities": {"x": {"type": "probe"}}, "chain": {"type": "probe"}}
    cfg = parse_config(doc, registry, file=FILE)
    kinds = [c.kind for c in cfg.ordered()]
    assert kinds == ["dataset", "model", "transport", "chain", "modality", "exporter"]
    assert kinds == sorted(kinds, key=cfg.kind_order.index)


def test_mutable_defaults_are_not_shared(registry: ComponentRegistry) -> None:
    a = load_table(ProbeConfig, {})
    b = load_table(ProbeConfig, {})
    assert a.tags == [] and a.tags is not b.tags


# --------------------------------------------------------------------------- UnknownKeyError
def test_unknown_key_names_path_allowed_keys_and_closest_match(registry: ComponentRegistry) -> None:
    err = only_error(exporter(delay_msec=5), registry)
    assert isinstance(err, UnknownKeyError)
    assert err.key_path == "exporters.p.delay_msec"
    assert "allowed keys: delay_ms, fail, limits, mode, model, port, tags" in err.message
    assert err.hint == "did you mean 'delay_ms'?"
    assert err.render() == (f"{FILE}: exporters.p.delay_msec: unknown key (allowed keys: delay_ms, fail, limits, "
                            "mode, model, port, tags) (did you mean 'delay_ms'?)")


def test_unknown_section_suggests_the_right_one(registry: ComponentRegistry) -> None:
    errs = errors_of({"exporter": {"p": {"type": "probe"}}}, registry)
    unknown = [e for e in errs if isinstance(e, UnknownKeyError)]
    assert len(unknown) == 1
    assert unknown[0].key_path == "exporter" and unknown[0].hint == "did you mean 'exporters'?"


def test_unknown_key_in_a_core_section(registry: ComponentRegistry) -> None:
    err = only_error({"node": {"hotkeys": "x"}, **exporter()}, registry)
    assert isinstance(err, UnknownKeyError) and err.key_path == "node.hotkeys"
    assert err.hint == "did you mean 'hotkey'?"


def test_unknown_key_in_a_sub_table(registry: ComponentRegistry) -> None:
    err = only_error(exporter(limits={"brust": 3}), registry)
    assert isinstance(err, UnknownKeyError) and err.key_path == "exporters.p.limits.brust"
    assert err.hint == "did you mean 'burst'?"


# --------------------------------------------------------------------------- WrongTypeError
@pytest.mark.parametrize(
    ("table", "path", "message"),
    [
        ({"delay_ms": "fast"}, "exporters.p.delay_ms", "expected integer, got string 'fast'"),
        ({"delay_ms": True}, "exporters.p.delay_ms", "expected integer, got boolean True"),
        ({"delay_ms": -1}, "exporters.p.delay_ms", "must be ≥ 0, got -1"),
        ({"delay_ms": 10_001}, "exporters.p.delay_ms", "must be ≤ 10000, got 10001"),
        ({"fail": "sometimes"}, "exporters.p.fail", "expected one of 'never', 'start', 'run', got string 'sometimes'"),
        ({"tags": "a,b"}, "exporters.p.tags", "expected list of string, got string 'a,b'"),
        ({"tags": ["a", 2]}, "exporters.p.tags[1]", "expected string, got integer 2"),
        ({"limits": 3}, "exporters.p.limits", "expected a table, got integer 3"),
        ({"limits": {"burst": 0}}, "exporters.p.limits.burst", "must be ≥ 1, got 0"),
        ({"port": "80"}, "exporters.p.port", "expected integer | nothing, got string '80'"),
    ],
)
def test_wrong_types_and_ranges_name_path_and_expectation(registry: ComponentRegistry, table: dict[str, Any],
                                                          path: str, message: str) -> None:
    err = only_error(exporter(**table), registry)
    assert isinstance(err, WrongTypeError)
    assert err.key_path == path
    assert err.message == message


def test_choices_suggest_the_closest_value(registry: ComponentRegistry) -> None:
    err = only_error(exporter(mode="fsat"), registry)
    assert isinstance(err, WrongTypeError)
    assert err.message == "expected one of 'fast', 'slow', got 'fsat'"
    assert err.hint == "did you mean 'fast'?"


def test_named_section_written_as_a_singleton_explains_the_shape(registry: ComponentRegistry) -> None:
    errs = errors_of({"modalities": {"type": "probe"}, "transport": {"type": "probe"}}, registry)
    assert any(isinstance(e, WrongTypeError) and e.key_path == "modalities.type"
               and "write [modalities.<name>]" in e.message for e in errs)


# --------------------------------------------------------------------------- component types
def test_unknown_component_type_lists_registered_types_and_suggests(registry: ComponentRegistry) -> None:
    err = only_error({"exporters": {"p": {"type": "prob"}}}, registry)
    assert isinstance(err, UnknownComponentTypeError)
    assert err.key_path == "exporters.p.type"
    assert err.message == "unknown exporter type 'prob' (registered: needs, probe)"
    assert err.hint == "did you mean 'probe'?"


def test_unknown_component_type_without_a_close_match_points_at_plugins(registry: ComponentRegistry) -> None:
    err = only_error({"chain": {"type": "ethereum"}}, registry)
    assert isinstance(err, UnknownComponentTypeError)
    assert "installed" in err.hint


# --------------------------------------------------------------------------- MissingKeyError
def test_missing_required_key_names_it_with_its_doc(registry: ComponentRegistry) -> None:
    err = only_error({"exporters": {"n": {"type": "needs"}}}, registry)
    assert isinstance(err, MissingKeyError)
    assert err.key_path == "exporters.n.size"
    assert err.message == "required key is missing (expected integer: A required size.)"


def test_missing_type_lists_the_registered_types(registry: ComponentRegistry) -> None:
    err = only_error({"exporters": {"p": {"delay_ms": 1}}}, registry)
    assert isinstance(err, MissingKeyError)
    assert err.key_path == "exporters.p.type"
    assert "registered exporter types: needs, probe" in err.message


# --------------------------------------------------------------------------- MissingComponentError
def test_reference_to_an_unconfigured_table_is_missing_component(registry: ComponentRegistry) -> None:
    doc = {"models": {"small": {"type": "probe"}}, **exporter(model="smal")}
    err = only_error(doc, registry)
    assert isinstance(err, MissingComponentError)
    assert err.key_path == "exporters.p.model"
    assert err.message == "refers to [models.smal], which is not configured (configured: small)"
    assert err.hint == "did you mean 'small'?"


def test_a_component_referring_to_itself_is_refused(registry: ComponentRegistry) -> None:
    err = only_error({"models": {"a": {"type": "probe", "model": "a"}}}, registry)
    assert err.key_path == "models.a.model"
    assert err.message == "refers to its own table [models.a]: a component cannot wrap itself"


def test_a_cycle_of_references_is_refused_once(registry: ComponentRegistry) -> None:
    doc = {"models": {"a": {"type": "probe", "model": "b"}, "b": {"type": "probe", "model": "c"},
                      "c": {"type": "probe", "model": "a"}, "d": {"type": "probe", "model": "a"}}}
    err = only_error(doc, registry)
    assert err.key_path == "models.a.model"
    assert err.message == "references form a cycle: a → b → c → a"


def test_modality_without_transport_is_missing_component(registry: ComponentRegistry) -> None:
    err = only_error({"modalities": {"m": {"type": "probe"}}}, registry)
    assert isinstance(err, MissingComponentError)
    assert err.key_path == "transport"
    assert "required by the configured modality" in err.message


def test_validator_without_chain_is_missing_component(registry: ComponentRegistry) -> None:
    doc = {"transport": {"type": "probe"}, "validator": {"type": "probe"}, "scorers": {"s": {"type": "probe"}},
           "modalities": {"m": {"type": "probe"}}}
    err = only_error(doc, registry)
    assert isinstance(err, MissingComponentError) and err.key_path == "chain"


def test_empty_config_is_missing_component(registry: ComponentRegistry) -> None:
    err = only_error({"node": {"name": "x"}}, registry)
    assert isinstance(err, MissingComponentError)
    assert "no components configured" in err.message


# --------------------------------------------------------------------------- TopologyError
def test_validator_without_scorer_or_modality_is_a_topology_error(registry: ComponentRegistry) -> None:
    doc = {"transport": {"type": "probe"}, "chain": {"type": "probe"}, "validator": {"type": "probe"}}
    errs = errors_of(doc, registry)
    assert sorted((type(e).__name__, e.key_path) for e in errs) == [
        ("TopologyError", "modalities"),
        ("TopologyError", "scorers"),
    ]
    assert all(isinstance(e, TopologyError) for e in errs)


# --------------------------------------------------------------------------- files
def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path, registry: ComponentRegistry) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "a"\nnetuid = = 2\n')
    with pytest.raises(ConfigError) as info:
        load_config_file(path, registry)
    assert info.value.file == str(path)
    assert str(info.value).startswith(f"{path}: invalid TOML")
    assert "line 3" in str(info.value)


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tnode init"):
        read_toml(tmp_path / "absent.toml")


def test_all_problems_are_reported_together(tmp_path: Path, registry: ComponentRegistry) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[exporters.p]\ntype = "probe"\ndelay_msec = 1\nfail = "sometimes"\n\n'
                    '[exporters.q]\ntype = "prob"\n')
    with pytest.raises(ConfigErrors) as info:
        load_config_file(path, registry, environ={})
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: exporters.") for line in lines)
    assert {type(e) for e in info.value.errors} == {UnknownKeyError, WrongTypeError, UnknownComponentTypeError}


# --------------------------------------------------------------------------- environment
def test_env_overrides_parse_toml_values_or_fall_back_to_strings() -> None:
    doc: dict[str, Any] = {"exporters": {"p": {"type": "probe", "delay_ms": 1}}}
    environ = {
        "TNODE_EXPORTERS__P__DELAY_MS": "25",
        "TNODE_EXPORTERS__P__TAGS": '["a", "b"]',
        "TNODE_NODE__NAME": "from-env",
        "TNODE_EXPORTERS__P__LIMITS__RATE": "0.5",
        "TNODE_PASSPHRASE": "never-a-config-key",
        "TNODE_NOSEPARATOR": "ignored",
        "OTHER__X": "ignored",
    }
    out = apply_env_overrides(doc, environ)
    assert out == {
        "exporters": {"p": {"type": "probe", "delay_ms": 25, "tags": ["a", "b"], "limits": {"rate": 0.5}}},
        "node": {"name": "from-env"},
    }


def test_env_overrides_apply_when_loading_a_file(tmp_path: Path, registry: ComponentRegistry) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[exporters.p]\ntype = "probe"\ndelay_ms = 1\n')
    cfg = load_config_file(path, registry, environ={"TNODE_EXPORTERS__P__DELAY_MS": "40"})
    assert cfg.of_kind("exporter")[0].config.delay_ms == 40


def test_misspelt_env_override_is_an_unknown_key(tmp_path: Path, registry: ComponentRegistry) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[exporters.p]\ntype = "probe"\n')
    with pytest.raises(ConfigErrors) as info:
        load_config_file(path, registry, environ={"TNODE_EXPORTERS__P__DELAYMS": "40"})
    (err,) = info.value.errors
    assert isinstance(err, UnknownKeyError) and err.key_path == "exporters.p.delayms"
    assert err.hint == "did you mean 'delay_ms'?"


def test_core_section_defaults() -> None:
    node = NodeSection()
    assert (node.hotkey, node.coldkey, node.netuid, node.create_keys) == ("hotkey", "coldkey", 1, False)


@dataclass(frozen=True)
class _Ordered:
    low: int = option(1, "Lower bound.")
    high: int = option(2, "Upper bound.")

    def check(self):  # type: ignore[no-untyped-def]
        if self.low > self.high:
            yield ("low", f"must not exceed high ({self.high})", "lower it")


def test_schema_check_reports_cross_key_problems_with_key_path() -> None:
    _, errors = collect_errors(_Ordered, {"low": 5}, file="node.toml", path="spam.x")
    assert [(e.key_path, e.message, e.hint) for e in errors] == [("spam.x.low", "must not exceed high (2)", "lower it")]
    _, ok = collect_errors(_Ordered, {"low": 1, "high": 3}, file="node.toml", path="spam.x")
    assert ok == []


# --------------------------------------------------------------------------- non-finite floats
@dataclass(frozen=True)
class _Floats:
    period: float = option(1.0, "A duration.", ge=0.001)
    cap: float = option(1.0, "Bounded above.", le=10.0)
    maybe: float | None = option(None, "Optional number.")
    series: list[float] = option([], "Numbers.")
    table: dict[str, float] = option({}, "Named numbers.")
    wild: float = option(0.0, "Opts in to non-finite values.", allow_nonfinite=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    ("key", "shape", "path"),
    [
        ("period", lambda v: v, "chain.period"),
        ("cap", lambda v: v, "chain.cap"),
        ("maybe", lambda v: v, "chain.maybe"),
        ("series", lambda v: [1.0, v], "chain.series[1]"),
        ("table", lambda v: {"a": v}, "chain.table.a"),
    ],
)
def test_every_float_refuses_nan_and_infinity_naming_the_key(bad: float, key: str, shape: Any, path: str) -> None:
    # NaN passes `ge`/`le` (every comparison with it is false) and inf passes `ge`: both used to load.
    _, errors = collect_errors(_Floats, {key: shape(bad)}, file="node.toml", path="chain")
    assert [(e.key_path, e.message) for e in errors] == [(path, f"expected a finite number, got {bad}")]
    assert isinstance(errors[0], WrongTypeError)


def test_a_float_may_opt_in_to_non_finite_values() -> None:
    value, errors = collect_errors(_Floats, {"wild": float("inf")}, file="node.toml", path="chain")
    assert errors == [] and value.wild == float("inf")


def test_finite_floats_and_integers_still_load() -> None:
    value, errors = collect_errors(_Floats, {"period": 2, "cap": 1e1, "series": [0.5, 3], "table": {"a": -1.5}},
                                   file="node.toml", path="chain")
    assert errors == [] and (value.period, value.cap, value.series, value.table) == (2.0, 10.0, [0.5, 3.0],
                                                                                     {"a": -1.5})


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        (lambda t: t + '\n[chain]\ntype = "local"\nblock_time = nan\n', "chain.block_time: expected a finite number, got nan"),
        (lambda t: t + '\n[chain]\ntype = "local"\nblock_time = inf\n', "chain.block_time: expected a finite number, got inf"),
        (lambda t: t.replace('type = "libp2p"', 'type = "libp2p"\nfreshness_seconds = inf', 1),
         "transport.freshness_seconds: expected a finite number, got inf"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_refuse_non_finite_floats_with_exit_78(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                edit: Any, line: str, command: str) -> None:
    from tnode.cli import EXIT_CONFIG, app
    from typer.testing import CliRunner

    monkeypatch.setenv("COLUMNS", "200")
    cli = CliRunner()
    assert cli.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    config = tmp_path / "node.toml"
    config.write_text(edit(config.read_text()))
    result = cli.invoke(app, [command, "-c", str(config)])
    assert result.exit_code == EXIT_CONFIG, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert f"{config}: {line}" in " ".join(result.output.split())
