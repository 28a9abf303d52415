import sys

from tagd.cli.main import main

sys.exit(main())
