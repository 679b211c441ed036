"""The example daily cron job: roll yesterday's notes up into daily_rollups (idempotent)."""

import os

import psycopg

with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    row = conn.execute(
        """INSERT INTO daily_rollups(day, notes, words)
           SELECT current_date - 1, count(*), coalesce(sum(words), 0) FROM notes
           WHERE created_at >= current_date - 1 AND created_at < current_date
           ON CONFLICT (day) DO UPDATE SET notes = excluded.notes, words = excluded.words
           RETURNING day, notes, words""").fetchone()
    print(f"rolled up {row[0]}: {row[1]} notes, {row[2]} words", flush=True)
