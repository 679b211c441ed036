"""A test cron job: records start and end in a journal, taking JOB_SECONDS."""

import os
import time

with open(os.environ["JOURNAL"], "a") as f:
    f.write(f"begin {time.time():.6f}\n")
time.sleep(float(os.environ.get("JOB_SECONDS", "1")))
with open(os.environ["JOURNAL"], "a") as f:
    f.write(f"end {time.time():.6f}\n")
