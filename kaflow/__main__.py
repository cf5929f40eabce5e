"""Run the `kaflow` command as `python -m kaflow`."""

from __future__ import annotations

from kaflow.cli.main import main

raise SystemExit(main())
