"""moto's server with its recorder on, started again with the state it had: what an AWS outage
looks like from here (the endpoint unreachable for a while, then back with everything it held).

A plain restart of moto wipes all of AWS, which no real fault does. moto's recorder
(``MOTO_ENABLE_RECORDING``) appends every request it serves to ``MOTO_RECORDER_FILEPATH``, and
its ``replay_recording`` sends them again: checked here (tests/integration/test_faults_aws.py)
to bring back S3 object versions, SSM parameters with their versions, secrets and topics. Its
HTTP endpoint (``/moto-api/recorder/replay-recording``) replays into a server that already
listens, so a client retrying through the outage could reach it empty for the replay's length;
this replays through a second listener on a free port first, and opens the real port only once
the state is back, as AWS's endpoint never answers half-restored.

A replay makes every object again, and what moto names at random is named anew: a secret's ARN
ends in 6 random letters, so the contract's ``database/*-secret-arn`` would name secrets that no
longer exist. Here a secret's suffix is derived from its name (moto's id manager takes id
sources), the same in every start. S3 version ids are still new ones; nothing of ours keeps them.

Run: ``python tests/moto_remembering.py PORT`` with the recorder's two variables set.
"""

from __future__ import annotations

import hashlib
import os
import string
import sys
import threading

from moto.moto_api import recorder
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from moto.utilities.id_generator import IdSourceContext, moto_id_manager
from werkzeug.serving import make_server, run_simple


def _stable_secret_suffix(context: IdSourceContext) -> str | None:
    resource = context.get("resource_identifier")
    if resource is None or resource.service != "secretsmanager":
        return None
    digest = hashlib.sha256(resource.unique_identifier.encode()).digest()
    return "".join(string.ascii_letters[b % len(string.ascii_letters)] for b in digest[:6])


def main() -> None:
    moto_id_manager.add_id_source(_stable_secret_suffix)
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))  # Step Functions' Task states call back here
    app = DomainDispatcherApplication(create_backend_app)
    recording = os.environ["MOTO_RECORDER_FILEPATH"]
    if os.path.exists(recording) and os.path.getsize(recording):
        side = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
        threading.Thread(target=side.serve_forever, daemon=True).start()
        recorder.replay_recording(target_host=f"http://127.0.0.1:{side.server_port}")
        side.shutdown()
        print(f"replayed {recording} into this server before listening", flush=True)
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
