import sys

from ptfast.commands.cli import main

sys.exit(main())
