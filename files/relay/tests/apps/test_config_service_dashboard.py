"""[service] dashboard_url, token_file and ca_file: a service that publishes itself."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from altmesh.config import ConfigError, load_config

from .configs import Node, common, make_node, relays_table, run

SERVICE = '[service]\nname = "web.alt"\ntarget = "127.0.0.1:8080"\n'


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = make_node(tmp_path)
    token = node.dir / "service.token"
    token.write_text("service-token\n")
    token.chmod(0o600)
    return node


def service_text(extra: str = "") -> str:
    return common("service") + relays_table() + SERVICE + extra


def problems_of(node: Node, text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(node.write(text), roles=("client", "service"))
    return [(p.field, p.problem) for p in info.value.problems]


def test_a_service_without_dashboard_options_publishes_nothing(node: Node) -> None:
    config = load_config(node.write(service_text()), roles=("service",))
    assert config.service is not None
    assert (config.service.dashboard_url, config.service.token_file) == (None, None)


def test_dashboard_url_and_token_file_load_relative_to_the_config(node: Node) -> None:
    text = service_text('dashboard_url = "http://127.0.0.1:8000/"\ntoken_file = "service.token"\n')
    config = load_config(node.write(text), roles=("service",))
    assert config.service is not None
    assert config.service.dashboard_url == "http://127.0.0.1:8000"
    assert config.service.token_file == (node.dir / "service.token").resolve()
    assert config.service.ca_file is None


def test_dashboard_url_and_token_file_need_each_other(node: Node) -> None:
    assert ("service.token_file", "is required with dashboard_url (the service token's file)") in (
        problems_of(node, service_text('dashboard_url = "https://d.example"\n'))
    )
    assert ("service.dashboard_url", "is required with token_file (the dashboard's base URL)") in (
        problems_of(node, service_text('token_file = "service.token"\n'))
    )


def test_a_token_file_open_to_others_is_refused_at_start(node: Node) -> None:
    (node.dir / "service.token").chmod(0o644)
    text = service_text('dashboard_url = "https://d.example"\ntoken_file = "service.token"\n')
    problems = problems_of(node, text)
    assert [field for field, _ in problems] == ["service.token_file"]
    assert "600" in problems[0][1]


def test_ca_file_is_only_for_an_https_dashboard_url(node: Node) -> None:
    text = service_text(
        'dashboard_url = "http://d.example"\ntoken_file = "service.token"\nca_file = "ca.pem"\n'
    )
    assert ("service.ca_file", "is only used for an https:// dashboard_url") in problems_of(
        node, text
    )


def test_a_bad_dashboard_url_names_the_field(node: Node) -> None:
    text = service_text('dashboard_url = "ftp://d.example"\ntoken_file = "service.token"\n')
    problems = problems_of(node, text)
    assert [field for field, _ in problems] == ["service.dashboard_url"]
    assert "https://" in problems[0][1]


def test_altmesh_withdraw_without_a_dashboard_url_says_which_option_is_missing(node: Node) -> None:
    result = run("altmesh.cli", "withdraw", "--config", str(node.write(service_text())))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"altmesh: {node.config}: service.dashboard_url: is required to withdraw a service "
        "(with service.token_file)"
    )


def test_altmesh_withdraw_names_the_dashboard_it_cannot_reach_and_exits_1(node: Node) -> None:
    with socket.socket() as holder:  # bound, not listening: connections are refused
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        text = service_text(
            f'dashboard_url = "http://127.0.0.1:{port}"\ntoken_file = "service.token"\n'
        )
        result = run("altmesh.cli", "withdraw", "--config", str(node.write(text)))
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"altmesh: withdrawing web.alt failed (unreachable): http://127.0.0.1:{port}:"
    )
    assert "service-token" not in result.stderr + result.stdout
