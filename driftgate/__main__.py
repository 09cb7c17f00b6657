from driftgate.cli import main

raise SystemExit(main())
