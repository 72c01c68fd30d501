"""Where the coach keeps its files: shipped prompts, per-user config and data."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_path, user_data_path

APP_NAME = "cramp-coach"


def prompts_dir() -> Path:
    """The ``prompts/`` directory; ``CRAMP_COACH_PROMPTS`` overrides the shipped one."""
    override = os.environ.get("CRAMP_COACH_PROMPTS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "prompts"


def data_dir() -> Path:
    """Per-user data (models, diary); ``CRAMP_COACH_DATA`` overrides."""
    override = os.environ.get("CRAMP_COACH_DATA")
    return Path(override) if override else user_data_path(APP_NAME)


def config_dir() -> Path:
    """Per-user config; ``CRAMP_COACH_CONFIG_DIR`` overrides."""
    override = os.environ.get("CRAMP_COACH_CONFIG_DIR")
    return Path(override) if override else user_config_path(APP_NAME)
