"""``python -m twcore`` is the ``twcore`` command."""

from twcore.cli.main import main

raise SystemExit(main())
