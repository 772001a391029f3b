import sys

from agents.mcp.server import main

sys.exit(main())
