"""comfystream-byoc: a Livepeer BYOC runner for real-time ComfyUI video processing.

This package is imported by every worker process (spawn re-imports the CLI module), so it stays
light: importing ``byoc`` must not pull in aiohttp's app, torch or the session table.
"""

__version__ = "0.1.0"
