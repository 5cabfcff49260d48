"""`.env` in the working directory configures the CLI and `serve`; the real environment wins over it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO
from tests.helpers.processes import overseer_env


def _overseer(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = env | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_working_directorys_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"# settings for this deployment\nDATABASE_URL=sqlite:///{tmp_path}/from-file.db\n")
    done = _overseer(tmp_path, overseer_env(), "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "from-file.db").exists()

    done = _overseer(tmp_path, overseer_env(DATABASE_URL=f"sqlite:///{tmp_path}/from-env.db"), "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "from-env.db").exists()


def test_the_example_env_file_names_only_settings_overseer_reads() -> None:
    from bot.settings import Settings, _env_name

    names = {line.split("=", 1)[0].lstrip("# ").strip() for line in (REPO / ".env.example").read_text().splitlines()
             if "=" in line and not line.startswith("##")}
    known = {_env_name(field) for field in Settings.model_fields} | {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    assert names and names <= known, names - known
