"""The ``--help`` layout of the command-line tools: the description as written (its line breaks and examples
kept) and every option's default after its help text, so a user sees what a run does without the flag. Flags
without a value and options whose default is unset (None, empty) say nothing: their default is the flag's
absence."""
from __future__ import annotations

import argparse

__all__ = ["HelpFormatter"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``formatter_class`` of the project's CLIs (see the module docstring)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or action.nargs == 0 or default is None
                or default is argparse.SUPPRESS or (isinstance(default, (list, tuple, dict, str)) and not default)):
            return text
        return f"{text} (default: %(default)s)".strip()
