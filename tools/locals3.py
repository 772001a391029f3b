"""moto in server mode as the local S3 endpoint (used by `make run`, the tests and the bench): a real HTTP server
on a free port, so presigned URLs are exercised with ordinary HTTP clients, exactly as against a cloud service."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from tools.emulator import free_port

BUCKET = "qorch-artifacts"


@dataclass
class LocalS3:
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    bucket: str = BUCKET
    server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        # moto accepts any credentials; these are not secrets and exist only on this machine.
        return {"QORCH_S3_ENDPOINT_URL": self.endpoint_url, "QORCH_S3_BUCKET": self.bucket,
                "QORCH_S3_REGION": "us-east-1", "QORCH_S3_ACCESS_KEY_ID": "local",
                "QORCH_S3_SECRET_ACCESS_KEY": "local-secret", "QORCH_S3_ADDRESSING_STYLE": "path"}

    def start(self) -> LocalS3:
        """Start the server, point this process's configuration at it and create the bucket."""
        from moto.server import ThreadedMotoServer

        from shared.adapters.objectstore import ObjectStore, ObjectStoreConfig, use_object_store
        from shared.runtime.config import config

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()
        os.environ.update(self.env())
        config.cache_clear()  # the configuration is read again, with these settings
        use_object_store(None)  # the next use reads the configuration just set
        ObjectStore(ObjectStoreConfig.from_settings(config())).ensure_bucket()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
