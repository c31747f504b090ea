"""A local stand-in for production, served on loopback.

The sandbox runs the platform API, the Cloudflare API (Workers, D1, KV), the
Cloudflare status page and a seeded D1 database as real HTTP servers on 127.0.0.1,
so runbooks use the same clients as in production with other base URLs. Named
scenarios each set up one cause of "API down"::

    from opslib._config import load_environment
    from opslib.sandbox import Sandbox

    sandbox = Sandbox(state_dir, load_environment("sandbox"), ephemeral_ports=True)
    sandbox.start("bad-deployment")
    ...  # load_environment("sandbox", environ={"RUNBOOK_ENVIRONMENTS":
         #     str(sandbox.environments_dir)})
    sandbox.stop()

Nothing in opslib's core imports this package.
"""

from ._sandbox import Sandbox, default_state_dir
from ._scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "Sandbox", "Scenario", "default_state_dir"]
