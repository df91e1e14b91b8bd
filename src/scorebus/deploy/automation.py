"""``scorebus deploy gcp``: the component as an inline program of Pulumi's Automation API.

The program runs in this process; the Pulumi engine (the ``pulumi`` CLI) plans
and applies it, keeping state wherever ``pulumi login`` points (Pulumi Cloud, or
``pulumi login --local`` / ``PULUMI_BACKEND_URL=gs://BUCKET``). What is missing
is said in one line before anything starts:

- no ``pulumi`` on PATH: how to install it;
- no Google credentials: how to get Application Default Credentials;
- the app cannot be loaded or planned: why (the usual ``ConfigError``).

The stack is selected, or created the first time; ``gcp:project`` and
``gcp:region`` are set in its config. The dynamic provider that deploys the
model runs in a separate process started by the engine: the project's
``virtualenv`` runtime option points it at this interpreter's environment,
which must hold scorebus.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ..app import load_app
from ..errors import ConfigError, ScorebusError
from .args import ScorebusGcpArgs
from .component import ScorebusGcp, export_outputs
from .plan import plan_app, slug

Action = Literal["up", "preview", "destroy"]
INSTALL_PULUMI = (
    "curl -fsSL https://get.pulumi.com | sh (or brew install pulumi; "
    "see https://www.pulumi.com/docs/iac/download-install/)"
)
# Read by the Google provider but not by google-auth (which reads the key file
# named by GOOGLE_APPLICATION_CREDENTIALS itself, so a wrong path is caught).
_CREDENTIAL_VARIABLES = (
    "GOOGLE_CREDENTIALS",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "CLOUDSDK_AUTH_ACCESS_TOKEN",
)


class DeployError(ScorebusError):
    """Pulumi ran and failed; its own output above says where."""


def require_pulumi_cli(path: str | None = None) -> str:
    """The ``pulumi`` executable.

    Raises:
        ConfigError: it is not on ``PATH`` (the message says how to install it).
    """
    found = shutil.which("pulumi", path=path)
    if found is None:
        raise ConfigError(
            f"the pulumi CLI is not installed (no `pulumi` on PATH): install it with {INSTALL_PULUMI}"
        )
    return found


def require_google_credentials(env: Mapping[str, str] | None = None) -> None:
    """Application Default Credentials, or a variable the Google provider reads.

    Raises:
        ConfigError: none found (the message says how to get them).
    """
    env = os.environ if env is None else env
    if any(env.get(k) for k in _CREDENTIAL_VARIABLES):
        return
    hint = (
        "run `gcloud auth application-default login`, or set "
        "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
    )
    try:
        import google.auth
        import google.auth.exceptions
    except ModuleNotFoundError:
        raise ConfigError(f"no Google credentials found: {hint}") from None
    quiet = logging.getLogger("google.auth._default")  # it warns about each place it looked
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError:
        raise ConfigError(f"no Google credentials found: {hint}") from None
    finally:
        quiet.setLevel(level)


def project_name(app_name: str) -> str:
    """The Pulumi project of an app's stacks."""
    return f"scorebus-{slug(app_name)}"


def program(args: ScorebusGcpArgs, name: str) -> Callable[[], None]:
    """The inline Pulumi program: the component and its outputs as stack outputs."""

    def run() -> None:
        export_outputs(ScorebusGcp(name, args))

    return run


def deploy_gcp(
    args: ScorebusGcpArgs,
    *,
    stack: str = "dev",
    action: Action = "up",
    on_output: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Preview, update or destroy the app's stack.

    Returns:
        ``up``: the stack outputs; ``preview``: the planned changes by kind;
        ``destroy``: the resources removed by kind.

    Raises:
        ConfigError: no pulumi CLI, no Google credentials, no Pulumi backend, or
            an app that cannot be deployed.
        DeployError: Pulumi ran and failed.
    """
    require_pulumi_cli()
    app = load_app(args.app)
    plan_app(app)  # refuse an app that cannot run before anything starts
    require_google_credentials()
    from pulumi import automation as auto

    runtime = auto.ProjectRuntimeInfo(name="python", options=_runtime_options())
    settings = auto.ProjectSettings(name=project_name(app.name), runtime=runtime)
    options = auto.LocalWorkspaceOptions(project_settings=settings)
    try:
        pulumi_stack = auto.create_or_select_stack(
            stack_name=stack,
            project_name=settings.name,
            program=program(args, slug(app.name, 20)),
            opts=options,
        )
        pulumi_stack.set_all_config(
            {
                "gcp:project": auto.ConfigValue(args.project),
                "gcp:region": auto.ConfigValue(args.region),
            }
        )
        if action == "preview":
            preview = pulumi_stack.preview(on_output=on_output)
            return {str(op.value): n for op, n in preview.change_summary.items()}
        if action == "destroy":
            destroyed = pulumi_stack.destroy(on_output=on_output)
            changes = destroyed.summary.resource_changes or {}
            return {str(getattr(op, "value", op)): n for op, n in changes.items()}
        up = pulumi_stack.up(on_output=on_output)
        return {key: out.value for key, out in up.outputs.items()}
    except auto.CommandError as exc:
        raise _translate(exc) from exc
    except ScorebusError:
        raise
    except Exception as exc:  # the Automation API's own failures end here, not in a traceback
        raise DeployError(f"pulumi {action} failed: {exc}") from exc


def _runtime_options() -> dict[str, str]:
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    return {"virtualenv": sys.prefix} if in_venv else {}


def _translate(exc: Exception) -> ScorebusError:
    text = str(exc)
    if "pulumi login" in text or "PULUMI_ACCESS_TOKEN" in text:
        return ConfigError(
            "Pulumi has nowhere to keep state: run `pulumi login` (Pulumi Cloud), or "
            "`pulumi login --local`, or set PULUMI_BACKEND_URL=gs://BUCKET"
        )
    if "PULUMI_CONFIG_PASSPHRASE" in text:
        return ConfigError(
            "this Pulumi backend encrypts stack secrets with a passphrase: set "
            "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE)"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("error:")]
    return DeployError(lines[-1] if lines else "pulumi failed; see its output above")
