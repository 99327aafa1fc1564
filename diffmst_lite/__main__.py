import sys

from diffmst_lite.cli import main

sys.exit(main())
