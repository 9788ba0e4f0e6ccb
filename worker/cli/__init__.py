"""The ``worker`` command. A thin layer: each subcommand parses its flags, builds settings and
calls down into the stages, the queue, the live monitor or the export; commands that do not
touch video import nothing heavy."""

from worker.cli.main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
