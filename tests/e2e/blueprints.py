"""Blueprint texts for the end-to-end tests (one service 'web' running the test app)."""

SECRET = "tok-SUPERSECRET-8c1f2e"


def web(
    build: str = "echo building",
    pre: str | None = None,
    env: dict[str, str] | None = None,
    name: str = "web",
    instances: int = 1,
) -> str:
    """A render.yaml with one web service; failures are switched on by the arguments."""
    lines = [
        "services:",
        "  - type: web",
        f"    name: {name}",
        "    runtime: python",
        f"    buildCommand: {build}",
        "    startCommand: python app.py",
        "    healthCheckPath: /health",
        "    maxShutdownDelaySeconds: 5",
        f"    numInstances: {instances}",
    ]
    if pre:
        lines.append(f"    preDeployCommand: {pre}")
    lines += ["    envVars:", "      - key: API_TOKEN", f"        value: {SECRET}"]
    for k, v in (env or {}).items():
        lines += [f"      - key: {k}", f'        value: "{v}"']
    return "\n".join(lines) + "\n"


ALL = {
    "render.yaml": web(pre="echo migrating"),
    "render-badbuild.yaml": web(build="echo compiling && exit 3"),
    "render-badpre.yaml": web(pre="echo migrating && exit 4"),
    "render-unhealthy.yaml": web(env={"HEALTH_STATUS": "500"}),
    "render-crash.yaml": web(env={"CRASH_AFTER_HEALTH": "0.3"}),
    "render-crash-later.yaml": web(env={"CRASH_AFTER_HEALTH": "0.9"}),
}
