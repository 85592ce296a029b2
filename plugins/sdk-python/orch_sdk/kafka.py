"""Kafka through a connection the step is granted by name (`allow = ["NAME"]`).

`open(name)` returns the host's client with every method raising the SDK's exceptions:
list_topics(), describe_topic(name), create_topic(name, partitions, replication_factor,
configs), create_partitions(name, total), list_groups(), committed(group, topic),
commit(group, topic, offsets), watermarks(topic), produce(topic, records),
produce_json(topic, records_json), consume(request). The record types are re-exported.
"""

from wit_world.imports import kafka as _kafka
from wit_world.imports.kafka import (  # noqa: F401 - re-exported
    BrokerError,
    ConsumeRequest,
    GroupInfo,
    Header,
    Incoming,
    Outgoing,
    PartitionOffset,
    Start,
    TopicConfig,
    TopicInfo,
)

from . import _wrap
from .errors import Denied, Failed, Retryable


def convert_error(error):
    """The SDK exception for a kafka `error`, or None if it is not one."""
    if isinstance(error, _kafka.Error_Denied):
        return Denied(error.value)
    if isinstance(error, _kafka.Error_Unavailable):
        return Retryable(f"kafka unavailable: {error.value}")
    if isinstance(error, _kafka.Error_Broker):
        return Failed(f"kafka error {error.value.code}: {error.value.message}")
    if isinstance(error, _kafka.Error_Other):
        return Failed(error.value)
    return None


def open(name: str) -> _wrap.Wrapped:  # noqa: A001 - mirrors the WIT name
    """Open the named kafka connection; Denied unless the step's `allow` lists it."""
    return _wrap.Wrapped(_wrap.call(convert_error, _kafka.open, name), convert_error)
