"""Where the coach keeps its files: shipped prompts, per-user config and data."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_path, user_data_path

APP_NAME = "cramp-coach"
PROMPTS_ENV = "CRAMP_COACH_PROMPTS_DIR"
"""The one override for the prompts folder (also ``[coach] prompts_dir`` in the config file)."""


def shipped_prompts_dir() -> Path:
    """The prompts that came with the coach.

    A built wheel carries the checkout's top-level ``prompts/`` as ``assistant/prompts/``;
    a source checkout (or an editable install) has it beside the package.
    """
    package = Path(__file__).resolve().parent
    inside = package / "prompts"
    return inside if inside.is_dir() else package.parent / "prompts"


def prompts_dir() -> Path:
    """The ``prompts/`` directory; ``CRAMP_COACH_PROMPTS_DIR`` overrides the shipped one."""
    override = os.environ.get(PROMPTS_ENV)
    return Path(override).expanduser() if override else shipped_prompts_dir()


def data_dir() -> Path:
    """Per-user data (models, diary); ``CRAMP_COACH_DATA`` overrides."""
    override = os.environ.get("CRAMP_COACH_DATA")
    return Path(override) if override else user_data_path(APP_NAME)


def config_dir() -> Path:
    """Per-user config; ``CRAMP_COACH_CONFIG_DIR`` overrides."""
    override = os.environ.get("CRAMP_COACH_CONFIG_DIR")
    return Path(override) if override else user_config_path(APP_NAME)
