"""The routing file: Alertmanager's matching rules, inheritance, and errors that name the route at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshd.bootstrap import init_federation
from meshd.cli import main
from meshd.config import ConfigError
from meshd.testing import default_regions_file
from meshd_plugins.alerts.matchers import Matcher, MatcherError
from meshd_plugins.alerts.routes import load_routes

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, doc: dict | str, name: str = "alert_routes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def tree_of(tmp_path: Path, route: dict, receivers: tuple[str, ...] = ("default", "pager", "chat")) -> object:
    return load_routes(write(tmp_path, {"route": route, "receivers": [{"name": r} for r in receivers]}))


# ---------------------------------------------------------------- matchers


@pytest.mark.parametrize("text, labels, expected", [
    ('alertname="RegionDown"', {"alertname": "RegionDown"}, True),
    ("alertname=RegionDown", {"alertname": "RegionDown"}, True),
    ('alertname!="RegionDown"', {"alertname": "RegionDown"}, False),
    ('region=~"eu-.*"', {"region": "eu-west-1"}, True),
    ('region=~"eu"', {"region": "eu-west-1"}, False),          # anchored, as in Alertmanager
    ('region!~"eu-.*|us-.*"', {"region": "ap-southeast-1"}, True),
    ('team=""', {}, True),                                     # an absent label matches as ""
    ('summary="a \\"quoted\\" word"', {"summary": 'a "quoted" word'}, True),
])
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["alertname", "=x", 'a=~"("', 'a="unbalanced', "1abc=x"])
def test_bad_matchers_are_errors(text: str) -> None:
    with pytest.raises(MatcherError):
        Matcher.parse(text)


# ---------------------------------------------------------------- the tree


def test_routing_follows_alertmanager(tmp_path: Path) -> None:
    tree = tree_of(tmp_path, {
        "receiver": "default", "group_by": ["alertname"], "group_wait": "5s",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True, "group_wait": "0s"},
            {"matchers": ['severity=~"critical|warning"'], "receiver": "chat",
             "routes": [{"matchers": ['region="eu-west-1"'], "group_by": ["alertname", "region"]}]},
            {"matchers": ['severity="critical"'], "receiver": "default"},  # never reached: chat had no continue
        ],
    })
    def receivers(labels: dict[str, str]) -> list[str]:
        return [r.receiver for r in tree.match(labels)]

    assert receivers({"alertname": "A", "severity": "critical"}) == ["pager", "chat"]
    assert receivers({"alertname": "A", "severity": "warning"}) == ["chat"]
    assert receivers({"alertname": "A", "severity": "info"}) == ["default"]      # no child: the root itself
    nested = tree.match({"alertname": "A", "severity": "warning", "region": "eu-west-1"})
    assert [r.receiver for r in nested] == ["chat"]                                # inherited receiver
    assert nested[0].group_by == ("alertname", "region") and nested[0].group_wait == 5.0  # inherited wait
    pager = tree.match({"alertname": "A", "severity": "critical"})[0]
    assert pager.group_wait == 0.0 and pager.group_by == ("alertname",)
    assert pager.group_interval == 300.0 and pager.repeat_interval == 4 * 3600.0   # Alertmanager defaults
    assert len({r.id for r in tree.routes}) == len(tree.routes)                    # group keys never collide


def test_group_by_every_label(tmp_path: Path) -> None:
    tree = tree_of(tmp_path, {"receiver": "default", "group_by": ["..."]})
    route = tree.root
    assert route.group_by is None
    assert route.group_labels({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))


def test_the_sample_file_is_valid() -> None:
    tree = load_routes(ROOT / "etc" / "alert_routes.yaml")
    assert {"pager", "ops-chat", "ops-chat-de", "heartbeat"} <= set(tree.receivers)
    assert tree.receivers["ops-chat-de"].lang == "de"
    assert [r.receiver for r in tree.match({"alertname": "RegionDown", "severity": "critical",
                                            "region": "eu-west-1"})] == ["pager", "ops-chat-de"]
    assert tree.inhibit_rules and tree.time_intervals["maintenance-window"]


# ---------------------------------------------------------------- errors


BAD = """\
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['severity="critical"']
      receiver: chat
    - matchers: ['severity="warning"']
      receiver: pager
      mute_time_intervals: [nights]
    - matchers: ['region=~"("']
      group_wait: soon
receivers:
  - name: default
  - name: chat
    urls: ["slak://hunter2-token-value/x"]
  - name: chat
"""


def test_a_bad_routing_file_names_every_route_at_fault(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as caught:
        load_routes(path)
    messages = [str(i) for i in caught.value.issues]
    text = "\n".join(messages)
    # Structural errors come first (pydantic), each with its key path and line.
    assert f"{path}:10: route.routes[2].matchers[0]:" in text and "bad regular expression" in text
    assert f"{path}:11: route.routes[2].group_wait:" in text and "not a duration" in text

    fixed = BAD.replace("region=~\"(\"", "region=~\"eu-.*\"").replace("group_wait: soon", "group_wait: 5s")
    with pytest.raises(ConfigError) as caught:
        load_routes(write(tmp_path, fixed))
    text = "\n".join(str(i) for i in caught.value.issues)
    assert f"{path}:8: route.routes[1].receiver: unknown receiver 'pager' (known: chat, default)" in text
    assert f"{path}:9: route.routes[1].mute_time_intervals[0]: unknown time interval 'nights'" in text
    assert f"{path}:16: receivers[2].name: receiver 'chat' is defined twice" in text
    assert "receivers[1].urls[0]: apprise does not understand this slak:// URL" in text
    assert "hunter2-token-value" not in text  # a URL holds a token: never echoed


@pytest.mark.parametrize("doc, where", [
    ({"route": {"receiver": "x", "matchers": ['a="b"']}, "receivers": [{"name": "x"}]}, "route.matchers"),
    ({"route": {"group_by": ["alertname"]}, "receivers": [{"name": "x"}]}, "route: the root route needs a receiver"),
    ({"route": {"receiver": "x", "colour": "red"}, "receivers": [{"name": "x"}]}, "route.colour: unknown key"),
    ({"route": {"receiver": "x"}, "receivers": [{"name": "x", "lang": "it"}]}, "receivers[0].lang"),
    ({"route": {"receiver": "x", "group_interval": "0s"}, "receivers": [{"name": "x"}]}, "route.group_interval"),
    ({"route": {"receiver": "x"}, "receivers": [{"name": "x"}],
      "time_intervals": [{"name": "t", "time_intervals": [{"weekdays": ["funday"]}]}]},
     "time_intervals[0].time_intervals[0].weekdays[0]"),
    ({"route": {"receiver": "x"}, "receivers": [{"name": "x"}],
      "time_intervals": [{"name": "t", "time_intervals": [{"location": "Mars/Olympus"}]}]},
     "time_intervals[0].time_intervals[0].location"),
    ({"route": {"receiver": "x"}, "receivers": [{"name": "x", "urls": ["pagerduty://@apikey"]}]},
     "receivers[0].urls[0]: pagerduty:// needs an integration (routing) key"),
])
def test_each_mistake_is_located(tmp_path: Path, doc: dict, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_routes(write(tmp_path, doc))
    assert where in "\n".join(str(i) for i in caught.value.issues)


def test_check_config_reports_the_bad_route_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regions = tmp_path / "regions.yaml"
    raw = yaml.safe_load(default_regions_file().read_text())
    raw["regions"] = {"eu-west-1": raw["regions"]["eu-west-1"]}
    regions.write_text(yaml.safe_dump(raw))
    routes = write(tmp_path, {"route": {"receiver": "chat", "routes": [
        {"matchers": ['severity="critical"'], "receiver": "chat"},
        {"matchers": ['severity="warning"'], "receiver": "pager"}]}, "receivers": [{"name": "chat"}]})
    result = init_federation(federation="acme", regions_file=regions, nats_url="nats://127.0.0.1:4222",
                             out=tmp_path / "fed", shared_files=["alert_routes.yaml"])
    config = result.configs["eu-west-1"]
    assert (tmp_path / "fed" / "alert_routes.yaml").read_text() == routes.read_text()  # copied by init
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    line = 1 + next(i for i, text in enumerate(routes.read_text().splitlines()) if "receiver: pager" in text)
    assert f"alert_routes.yaml:{line}: route.routes[1].receiver: unknown receiver 'pager' (known: chat)" in err

    # Naming a routing file that does not exist is an error; relying on the default one is not.
    data = yaml.safe_load(config.read_text())
    data["alerts"] = {"routes_file": "missing.yaml"}
    config.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "eu-west-1.yaml:" in err and "alerts.routes_file: " in err and "missing.yaml: file not found" in err
    del data["alerts"]
    config.write_text(yaml.safe_dump(data))
    (tmp_path / "fed" / "alert_routes.yaml").unlink()
    assert main(["check-config", str(config)]) == 0


def test_receiver_urls_can_come_from_each_regions_own_secrets(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    regions = tmp_path / "regions.yaml"
    raw = yaml.safe_load(default_regions_file().read_text())
    raw["regions"] = {"eu-west-1": raw["regions"]["eu-west-1"]}
    regions.write_text(yaml.safe_dump(raw))
    write(tmp_path, {"route": {"receiver": "pager"},
                     "receivers": [{"name": "pager", "urls": [{"secret": "pagerduty"}, {"secret": "chat"}]}]})
    result = init_federation(federation="acme", regions_file=regions, nats_url="nats://127.0.0.1:4222",
                             out=tmp_path / "fed", shared_files=["alert_routes.yaml"])
    config = result.configs["eu-west-1"]
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "receivers[0].urls[0]: secret 'pagerduty' is not in this region's config " \
           f"(add alerts.secrets.pagerduty to {config})" in err
    assert "receivers[0].urls[1]: secret 'chat'" in err
    data = yaml.safe_load(config.read_text())
    data["alerts"] = {"secrets": {"pagerduty": "pagerduty://Key0123@Api", "chat": "nosuch://hunter2-abc123"}}
    config.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "eu-west-1.yaml:" in err and "alerts.secrets.chat: apprise does not understand this nosuch:// URL" in err
    assert "hunter2" not in err
    data["alerts"]["secrets"]["chat"] = "json://127.0.0.1:9/hook"
    config.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(config)]) == 0
