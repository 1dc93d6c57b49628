"""``python -m perfplus_agent.cli`` is the ``perfplus`` command."""

from perfplus_agent.cli import main

main()
