"""YAML data files that remember where each value came from.

Everything the coach says and understands lives in YAML under ``prompts/``. A person
editing those files needs errors that point at ``file:line``, not a traceback, so the
loader keeps the line of every mapping key and list item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from assistant.errors import UserFacingError


class DataFileError(UserFacingError, ValueError):
    """A data file is unreadable or invalid; the message names the file and line."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {problem}")


class LineDict(dict[Any, Any]):
    """A mapping that knows the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A list that knows the 1-based line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    _path: Path | str = "?"
    """The file being read, for errors raised while constructing."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        self.flatten_mapping(node)
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise DataFileError(
                    getattr(self, "_path", "?"), key_node.start_mark.line + 1,
                    "a key must be a plain word or number, not a list or mapping",
                )
            if key in result:
                raise DataFileError(
                    getattr(self, "_path", "?"), key_node.start_mark.line + 1,
                    f"duplicate key {key!r}",
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        result = LineList(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file, turning every failure into a one-line :class:`DataFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, None, f"cannot read file ({exc})") from None
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)  # checks every character already
        loader._path = path
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise DataFileError(path, line, f"character U+{code:04X} is not allowed in YAML; delete it") from None
    except RecursionError:
        raise DataFileError(path, None, "brackets or indents nest too deep; check for ones that never close") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise DataFileError(path, at, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise DataFileError(path, None, f"YAML error: {' '.join(str(exc).split())}") from None
    except DataFileError as exc:
        raise DataFileError(path, exc.line, exc.problem) from None
    finally:
        if loader is not None:
            loader.dispose()


def line_of(container: Any, key: Any = None) -> int | None:
    """Best known line for ``container[key]`` (or the container itself)."""
    if key is not None:
        if isinstance(container, LineDict):
            return container.key_lines.get(key, container.line)
        if isinstance(container, LineList) and isinstance(key, int) and key < len(container.item_lines):
            return container.item_lines[key]
    return getattr(container, "line", None) or None
