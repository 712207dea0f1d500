"""Configuration: ``deploy-code.yaml`` -> a validated, located, immutable :class:`Project`.

Place in the flow: the first layer above the leaves (``errors``, ``units``). Input is a file (or text);
output is a :class:`Project` whose ``spec`` the graph, scheduling and supervisor layers read, plus the
interpolation helpers that turn a service's templates into one replica's argv and environment.

Must never: start anything, open sockets, touch the network, or mutate what it returned. The only I/O
is reading the config file and its env_files. Every problem is a
:class:`~deploy_code.errors.ConfigError` with E001/E002/E003/S004 diagnostics that carry
file:line:column, all of them at once.
"""

from deploy_code.config.api_spec import ApiSpec, ApiTls, ApiToken, is_loopback, parse_listen
from deploy_code.config.environment import env_name, render_argv, render_probe, service_environment
from deploy_code.config.interpolate import (
    InterpolationContext,
    Reference,
    ReferenceKind,
    ServiceAddress,
    references,
    render,
)
from deploy_code.config.loader import DEFAULT_FILENAME, load, load_text, resolve_state_dir
from deploy_code.config.model import (
    BackoffSpec,
    Condition,
    ExecCheck,
    HealthSpec,
    HttpCheck,
    LogLineCheck,
    NotifyCheck,
    ProbeSpec,
    ProjectSpec,
    ResourcesSpec,
    RestartSpec,
    ServiceSpec,
    Settings,
    TcpCheck,
    TimeoutsSpec,
)
from deploy_code.config.observe import AlertRule, AlertsSpec, RestartRateSpec, RetentionSpec, WebhookSpec
from deploy_code.config.project import Project
from deploy_code.config.schema import json_schema
from deploy_code.config.source import DataPath, SourceMap

__all__ = [
    "DEFAULT_FILENAME",
    "AlertRule",
    "AlertsSpec",
    "ApiSpec",
    "ApiTls",
    "ApiToken",
    "BackoffSpec",
    "Condition",
    "DataPath",
    "ExecCheck",
    "HealthSpec",
    "HttpCheck",
    "InterpolationContext",
    "LogLineCheck",
    "NotifyCheck",
    "ProbeSpec",
    "Project",
    "ProjectSpec",
    "Reference",
    "ReferenceKind",
    "ResourcesSpec",
    "RestartRateSpec",
    "RestartSpec",
    "RetentionSpec",
    "ServiceAddress",
    "ServiceSpec",
    "Settings",
    "SourceMap",
    "TcpCheck",
    "TimeoutsSpec",
    "WebhookSpec",
    "env_name",
    "is_loopback",
    "json_schema",
    "load",
    "load_text",
    "parse_listen",
    "references",
    "render",
    "render_argv",
    "render_probe",
    "resolve_state_dir",
    "service_environment",
]
