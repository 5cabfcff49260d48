"""What ships beside the code: the image's entry command, the Slack manifest, the dependency pins."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers.paths import REPO


def test_the_image_runs_migrations_then_the_same_cli_the_tests_run(tmp_path: Path) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^USER overseer", dockerfile, re.M) and "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None
    shell_line = yaml.safe_load(cmd.group(1))[-1]
    commands = [shlex.split(part.strip().removeprefix("exec ")) for part in shell_line.split("&&")]
    assert commands == [["overseer", "db", "upgrade"], ["overseer", "serve"]]
    # The first command, as the image runs it, against a fresh SQLite file:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'data.db'}", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([sys.executable, "-m", "bot.cli", *commands[0][1:]], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "revision 0006" in done.stdout, done.stderr


def test_the_manifest_asks_for_exactly_the_scopes_the_bot_uses() -> None:
    manifest = yaml.safe_load((REPO / "bot" / "manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == {"commands", "chat:write", "chat:write.public", "files:write", "usergroups:read", "users:read",
                      "channels:history", "groups:history"}
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/overseer" and command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert "socket_mode_enabled" in manifest["settings"]


def test_known_bad_litellm_releases_are_excluded() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    litellm = re.search(r'"litellm([^"]*)"', pyproject)
    assert litellm is not None
    assert "!=1.82.7" in litellm.group(1) and "!=1.82.8" in litellm.group(1)
