"""``python -m twcore`` is the ``twcore`` command."""

from twcore.orchestration.cli.main import main

raise SystemExit(main())
