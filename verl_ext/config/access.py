"""Reading a setting by its dotted name from any config shape the project meets (a DictConfig, a dict, an attribute
tree). Its own module, importing nothing of the project, so that config readers at every layer (the reward's
``node_actor()``, the start-up checks, OraPO's settings) share it without importing each other."""
from __future__ import annotations

from typing import Any


def config_get(config: Any, dotted: str, default: Any = None) -> Any:
    """``config.a.b`` for ``"a.b"`` on a DictConfig, a dict or an attribute tree; ``default`` where a level or the
    value is missing (the start-up checks run on user configs with optional sections)."""
    node = config
    for part in dotted.split("."):
        if node is None:
            return default
        node = node.get(part, None) if hasattr(node, "get") else getattr(node, part, None)
    return default if node is None else node
