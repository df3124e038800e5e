"""The one place that knows which ComfyUI package is installed and how its API differs.

Only ``comfyui==0.0.1`` (the registry snapshot of the pip-installable hiddenswitch fork) is
installed and tested with this project. The current fork (class ``Comfy``, versions 0.3.x to
0.10) is handled from reading its source, untested: there ``queue_prompt`` takes a per-call
``progress_handler`` and raises on failure, the client takes no ``loop``, and
``validate_prompt`` is a coroutine taking ``(prompt_id, prompt, partial_execution_targets)``.

Everything that imports ``comfy`` goes through here, after the traps of the embedded client are
defused: importing it must not parse the process's argv (``main_pre`` turns argv parsing on at
import), and ``folder_paths``/``model_management``/node modules must not be imported before the
client is entered with its ``Configuration`` (they read the configured ``cwd`` at import).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

TESTED_VERSIONS = ("0.0.1",)

_CLIENT_MODULE = "comfy.client.embedded_comfy_client"
_import_lock = threading.Lock()


class ComfyRunFailed(Exception):
    """ComfyUI reported a failed run (0.0.1 returns None and logs; newer forks raise)."""

    def __init__(self, message: str, node_id: str | None = None, node_type: str | None = None):
        super().__init__(message)
        self.node_id = node_id
        self.node_type = node_type


def import_client_module() -> ModuleType:
    """Import the embedded client module with argv hidden from ComfyUI's argument parser."""
    with _import_lock:
        module = sys.modules.get(_CLIENT_MODULE)
        if module is not None:
            return module
        saved = sys.argv
        sys.argv = saved[:1]
        try:
            return importlib.import_module(_CLIENT_MODULE)
        finally:
            sys.argv = saved


def comfy_version() -> str:
    """``comfy.__version__`` (imports the package, which is light)."""
    import comfy

    return str(getattr(comfy, "__version__", "unknown"))


def is_tested_version(version: str) -> bool:
    return version in TESTED_VERSIONS


def make_configuration(
    workspace: str, *, cuda: bool, overrides: Mapping[str, Any] | None = None
) -> Any:
    """An explicit ``Configuration`` (never argv): workspace as ``cwd``, device flags."""
    from comfy.cli_args_types import Configuration

    config = Configuration()
    config.cwd = workspace
    config.disable_cuda_malloc = True
    if cuda:
        config.gpu_only = True
    else:
        config.cpu = True
    for key, value in (overrides or {}).items():
        config[key] = value
    return config


def create_client(configuration: Any, progress_handler: Any, loop: Any) -> Any:
    """Build the embedded client with one worker thread (runs are serialised anyway)."""
    module = import_client_module()
    cls = getattr(module, "Comfy", None) or module.EmbeddedComfyClient
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"configuration": configuration, "progress_handler": progress_handler}
    if "max_workers" in params:
        kwargs["max_workers"] = 1
    if "loop" in params:
        kwargs["loop"] = loop
    return cls(**kwargs)


def load_node_mappings() -> dict[str, type]:
    """ComfyUI's live ``NODE_CLASS_MAPPINGS`` (imports all nodes; call after entering)."""
    from comfy.nodes.package import import_all_nodes_in_workspace

    return import_all_nodes_in_workspace().NODE_CLASS_MAPPINGS  # type: ignore[no-any-return]


async def validate_prompt(prompt: dict[str, Any], prompt_id: str) -> list[str]:
    """ComfyUI's own validation of a prompt: a list of problems (empty when valid)."""
    from comfy.cmd import execution

    fn = execution.validate_prompt
    if inspect.iscoroutinefunction(fn):
        result = await fn(prompt_id, prompt, None)
    else:
        result = fn(prompt)
    valid, error, _good_outputs, node_errors = tuple(result)[:4]
    problems: list[str] = []
    if not isinstance(node_errors, Mapping):
        node_errors = {}
    for node_id, entry in node_errors.items():
        for reason in entry.get("errors", []):
            problems.append(
                f"node {node_id} ({entry.get('class_type')}): "
                f"{reason.get('message')}: {reason.get('details')}"
            )
    if not valid and not problems and error:
        problems.append(f"{error.get('message')}: {error.get('details')}")
    return problems


async def queue_prompt(
    client: Any, prompt: dict[str, Any], prompt_id: str, progress_handler: Any
) -> dict[str, Any]:
    """Run one prompt; raise ``ComfyRunFailed`` on any failure, whatever the version does."""
    params = inspect.signature(client.queue_prompt).parameters
    kwargs: dict[str, Any] = {"prompt_id": prompt_id, "client_id": progress_handler.client_id}
    if "progress_handler" in params:
        kwargs["progress_handler"] = progress_handler
    try:
        outputs = await client.queue_prompt(prompt, **kwargs)
    except ComfyRunFailed:
        raise
    except Exception as exc:
        raise ComfyRunFailed(f"{type(exc).__name__}: {exc}") from exc
    if outputs is None:
        raise _failure_from_status(client)
    return dict(outputs)


def _failure_from_status(client: Any) -> ComfyRunFailed:
    """0.0.1 returns None on failure; the reason is in the executor's status messages."""
    executor = getattr(client, "_prompt_executor", None)
    for event, data in reversed(getattr(executor, "status_messages", None) or []):
        if event == "execution_error":
            message = f"{data.get('exception_type')}: {data.get('exception_message')}"
            return ComfyRunFailed(message, str(data.get("node_id")), data.get("node_type"))
        if event == "execution_interrupted":
            return ComfyRunFailed("execution interrupted", str(data.get("node_id")))
    return ComfyRunFailed("ComfyUI returned no result (the prompt did not run)")
