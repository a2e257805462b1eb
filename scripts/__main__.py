"""``python -m armlab_scripts ARGS`` is ``armlab ARGS``: the one entry point, whose `main` maps errors to exit codes."""

from armlab_scripts.cli import main

raise SystemExit(main())
