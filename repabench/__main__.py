from repabench.cli import main

raise SystemExit(main())
