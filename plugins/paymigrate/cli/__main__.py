import sys

from paymigrate.cli import main

sys.exit(main())
