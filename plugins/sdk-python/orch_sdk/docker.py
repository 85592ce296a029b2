"""A Docker Engine through a connection the step is granted by name (`allow = ["NAME"]`).

`open(name)` returns the host's engine with every method raising the SDK's exceptions:
inspect_image, list_images, ensure_image, list_networks, create_network, remove_network,
list_volumes, create_volume, remove_volume, list_containers, check_container,
create_container, start_container, stop_container, remove_container, inspect_container,
wait_container, logs, exec. Every call is checked against the connection's policy first.
The record types are re-exported.
"""

from wit_world.imports import docker as _docker
from wit_world.imports.docker import (  # noqa: F401 - re-exported
    ContainerSpec,
    ContainerState,
    ContainerSummary,
    DeviceRequest,
    Healthcheck,
    ImageInfo,
    Mount,
    MountKind,
    NamedObject,
    NetworkAttachment,
    Pair,
    Port,
    PullPolicy,
)

from . import _wrap
from .errors import Denied, Failed, Retryable


def convert_error(error):
    """The SDK exception for a docker `error`, or None if it is not one."""
    if isinstance(error, _docker.Error_Denied):
        return Denied(error.value)
    if isinstance(error, _docker.Error_Unavailable):
        return Retryable(f"docker engine unavailable: {error.value}")
    if isinstance(error, _docker.Error_NotFound):
        return Failed(f"not found: {error.value}")
    if isinstance(error, _docker.Error_Engine):
        return Failed(f"docker engine: {error.value}")
    return None


def open(name: str) -> _wrap.Wrapped:  # noqa: A001 - mirrors the WIT name
    """Open the named docker connection; Denied unless the step's `allow` lists it."""
    return _wrap.Wrapped(_wrap.call(convert_error, _docker.open, name), convert_error)
