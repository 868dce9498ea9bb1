"""The launcher starts the local data source only when DATASOURCE_URL points at it; any other URL is used as it is.

Before, `DATASOURCE_URL=<an external API> make demo` tried to start the stand-in on that URL's port
and failed with "port ... is already taken". No service is started here: a temporary stack home.
"""

from __future__ import annotations

import socket

import pytest

from core.settings import Settings
from stack import launcher
from stack.layout import Layout
from stack.services import SERVICES, is_standin


@pytest.mark.parametrize("url", [
    "http://localhost:8765/api/", "http://127.0.0.1:8765/api", "http://localhost:28765/api/", "http://[::1]:9/api/",
])
def test_loopback_at_the_stand_ins_path_is_the_stand_in(url):
    assert is_standin(Settings(datasource_url=url))


@pytest.mark.parametrize("url", [
    "https://randomuser.me/api/", "https://localhost:8765/api/", "http://10.1.2.3:8765/api/",
    "http://localhost:8765/api/1.4/", "http://localhost:8765/other/api/", "http://example.org/api/",
    "http://localhost:8765/api/?key=x", "http://user:secret@localhost:8765/api/",
])
def test_any_other_url_is_somebody_elses(url):
    assert not is_standin(Settings(datasource_url=url))


def test_an_external_source_is_neither_started_nor_refused_for_its_port(tmp_path, capsys):
    with socket.socket() as busy:  # a server of somebody else's, on the URL's port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings(stack_home=tmp_path, datasource_url=f"http://127.0.0.1:{port}/randomuser/api/")
        layout = Layout(tmp_path)
        assert launcher.up(settings, layout, ["datasource"]) == []
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one line says so
    assert f"up: datasource external   DATASOURCE_URL=http://127.0.0.1:{port}/randomuser/api/ is not the local stand-in" in out
    assert "used as it is, not started here" in out
    assert not layout.pidfile("datasource").exists()
    row = next(row for row in launcher.status(settings, layout) if row.name == "datasource")
    assert row.state == "external" and row.pid is None


def test_credentials_in_the_url_are_never_printed(tmp_path, capsys):
    settings = Settings(stack_home=tmp_path, datasource_url="https://key:s3cr3t@api.example.org/api/?token=t0k3n")
    launcher.up(settings, Layout(tmp_path), ["datasource"])
    out = capsys.readouterr().out
    assert "api.example.org/api/" in out
    assert "s3cr3t" not in out and "t0k3n" not in out and "key:" not in out


def test_the_stand_in_is_still_the_launchers(tmp_path):
    settings = Settings(stack_home=tmp_path, datasource_url="http://localhost:28765/api/")
    assert SERVICES["datasource"].elsewhere(settings) is None
    assert SERVICES["datasource"].command(settings, Layout(tmp_path))[-2:] == ["--port", "28765"]
