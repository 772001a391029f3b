"""The local router served the way Cloud Functions serves a function: functions-framework's production server
(gunicorn, one worker process with a thread pool; TCP_NODELAY and HTTP/1.1 keep-alive), not werkzeug's development
server. `bench.transitions` starts it in a process of its own, with the environment it gives (emulator, project, key
cache), to time HTTP transitions over a new connection and over a reused one.

    python -m bench._serve PORT
"""

from __future__ import annotations

import sys


def main(port: int) -> None:
    from functions_framework._http import create_server

    from tools.router import create_app

    # What `functions-framework --target=...` runs in production when debug is off (GunicornApplication).
    create_server(create_app(), debug=False).run("127.0.0.1", port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
