import sys

from efficientdet.cli.main import main

sys.exit(main())
