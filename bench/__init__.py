"""`make bench`: the benchmarks of issue #6 (proxy overhead, flips, deploys, rollbacks, restarts, the
idle daemon), of issue #12 (a docker row beside the native deploys) and of issue #10 (fail-fast time,
PostgreSQL's TLS connect cost), run side by side on loopback. Entry point: ``python -m bench.run``.

The bench is a harness, not part of the slipstream package: it hands its own environment to the
processes it starts, and installs wrk and nginx when they are missing.
"""
