"""The image test's choice of container engine (tests/test_image.py `_engine`): one that can run containers,
never a `docker` command with no daemon behind it."""

from __future__ import annotations

import os
import stat

import pytest
import test_image


def _fake(bin_dir, name, works: bool):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + ("exit 0\n" if works else "echo 'Cannot connect to the daemon' >&2; exit 1\n"))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("DIRAC_IMAGE_ENGINE", raising=False)
    monkeypatch.delenv("DIRAC_REQUIRE_IMAGE_ENGINE", raising=False)
    monkeypatch.setenv("CONTAINERS_CONF", os.environ.get("CONTAINERS_CONF", "unused"))
    return tmp_path


def test_a_docker_without_daemon_is_passed_over_for_a_working_podman(fake_path):
    _fake(fake_path, "docker", works=False)
    _fake(fake_path, "podman", works=True)
    assert test_image._engine() == (["podman"], "podman")


def test_a_working_docker_is_used_when_podman_is_absent(fake_path):
    _fake(fake_path, "docker", works=True)
    assert test_image._engine() == (["docker"], "docker")


def test_no_working_engine_skips_with_every_reason_or_fails_where_required(fake_path, monkeypatch):
    _fake(fake_path, "docker", works=False)
    with pytest.raises(pytest.skip.Exception, match="docker: cannot run containers.*daemon"):
        test_image._engine()
    monkeypatch.setenv("DIRAC_REQUIRE_IMAGE_ENGINE", "1")
    with pytest.raises(pytest.fail.Exception, match="podman: not installed"):
        test_image._engine()
