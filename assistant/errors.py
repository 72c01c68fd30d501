"""Errors the user can act on: the CLI prints their message, never a traceback."""


class UserFacingError(Exception):
    """An error whose message already says what is wrong and what to do."""
