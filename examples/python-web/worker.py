"""The example background worker: tags new notes with their word count, one batch a second.

It runs as its own service (type: worker): slipstream starts the new release, waits a moment to
see it stay up, then stops the old one. It exits cleanly on SIGTERM between batches.
"""

import json
import os
import signal
import time

import psycopg

stopping = False


def stop(*_: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)
print(json.dumps({"level": "info", "msg": "worker started"}), flush=True)
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    while not stopping:
        try:
            rows = conn.execute("UPDATE notes SET words = array_length(regexp_split_to_array(trim(text), "
                                "'\\s+'), 1) WHERE words IS NULL RETURNING id").fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
            # the API's migrations have not run yet (services deploy side by side): wait for them
            print(json.dumps({"level": "warn", "msg": "schema not migrated yet; waiting"}), flush=True)
            time.sleep(2)
            continue
        if rows:
            print(json.dumps({"level": "info", "msg": "counted words", "notes": len(rows)}), flush=True)
        time.sleep(1)
print(json.dumps({"level": "info", "msg": "worker stopped"}), flush=True)
