from mensa.proto import mensa_pb2 as _mensa_pb2
from mensa.proto import scheduler_pb2 as _scheduler_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("call", "event", "error", "ping", "pong", "register_agent", "status_update", "agent_registered", "run_task", "kill_task", "status_update_acknowledgement", "shutdown_framework", "framework_to_executor", "shutdown_agent", "master_info_request", "master_info_response")
    CALL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    REGISTER_AGENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_UPDATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    RUN_TASK_FIELD_NUMBER: _ClassVar[int]
    KILL_TASK_FIELD_NUMBER: _ClassVar[int]
    STATUS_UPDATE_ACKNOWLEDGEMENT_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_TO_EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_AGENT_FIELD_NUMBER: _ClassVar[int]
    MASTER_INFO_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MASTER_INFO_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    call: _scheduler_pb2.Call
    event: _scheduler_pb2.Event
    error: Error
    ping: Ping
    pong: Pong
    register_agent: RegisterAgent
    status_update: StatusUpdate
    agent_registered: AgentRegistered
    run_task: RunTask
    kill_task: KillTask
    status_update_acknowledgement: StatusUpdateAcknowledgement
    shutdown_framework: ShutdownFramework
    framework_to_executor: FrameworkToExecutor
    shutdown_agent: ShutdownAgent
    master_info_request: MasterInfoRequest
    master_info_response: MasterInfoResponse
    def __init__(self, call: _Optional[_Union[_scheduler_pb2.Call, _Mapping]] = ..., event: _Optional[_Union[_scheduler_pb2.Event, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., register_agent: _Optional[_Union[RegisterAgent, _Mapping]] = ..., status_update: _Optional[_Union[StatusUpdate, _Mapping]] = ..., agent_registered: _Optional[_Union[AgentRegistered, _Mapping]] = ..., run_task: _Optional[_Union[RunTask, _Mapping]] = ..., kill_task: _Optional[_Union[KillTask, _Mapping]] = ..., status_update_acknowledgement: _Optional[_Union[StatusUpdateAcknowledgement, _Mapping]] = ..., shutdown_framework: _Optional[_Union[ShutdownFramework, _Mapping]] = ..., framework_to_executor: _Optional[_Union[FrameworkToExecutor, _Mapping]] = ..., shutdown_agent: _Optional[_Union[ShutdownAgent, _Mapping]] = ..., master_info_request: _Optional[_Union[MasterInfoRequest, _Mapping]] = ..., master_info_response: _Optional[_Union[MasterInfoResponse, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "refused", "leader")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[Error.Code]
        BAD_REQUEST: _ClassVar[Error.Code]
        TOO_LARGE: _ClassVar[Error.Code]
        NOT_SUBSCRIBED: _ClassVar[Error.Code]
        NOT_REGISTERED: _ClassVar[Error.Code]
        UNKNOWN_TASK: _ClassVar[Error.Code]
        NOT_LEADER: _ClassVar[Error.Code]
        FORBIDDEN: _ClassVar[Error.Code]
        STALE: _ClassVar[Error.Code]
    UNKNOWN: Error.Code
    BAD_REQUEST: Error.Code
    TOO_LARGE: Error.Code
    NOT_SUBSCRIBED: Error.Code
    NOT_REGISTERED: Error.Code
    UNKNOWN_TASK: Error.Code
    NOT_LEADER: Error.Code
    FORBIDDEN: Error.Code
    STALE: Error.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    code: Error.Code
    message: str
    refused: str
    leader: _mensa_pb2.MasterInfo
    def __init__(self, code: _Optional[_Union[Error.Code, str]] = ..., message: _Optional[str] = ..., refused: _Optional[str] = ..., leader: _Optional[_Union[_mensa_pb2.MasterInfo, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("timeout_seconds",)
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    timeout_seconds: float
    def __init__(self, timeout_seconds: _Optional[float] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterAgent(_message.Message):
    __slots__ = ("agent_info", "tasks", "frameworks", "version", "http_port", "advertise_ip")
    AGENT_INFO_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HTTP_PORT_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_IP_FIELD_NUMBER: _ClassVar[int]
    agent_info: _mensa_pb2.AgentInfo
    tasks: _containers.RepeatedCompositeFieldContainer[_mensa_pb2.Task]
    frameworks: _containers.RepeatedCompositeFieldContainer[_mensa_pb2.FrameworkInfo]
    version: str
    http_port: int
    advertise_ip: str
    def __init__(self, agent_info: _Optional[_Union[_mensa_pb2.AgentInfo, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_mensa_pb2.Task, _Mapping]]] = ..., frameworks: _Optional[_Iterable[_Union[_mensa_pb2.FrameworkInfo, _Mapping]]] = ..., version: _Optional[str] = ..., http_port: _Optional[int] = ..., advertise_ip: _Optional[str] = ...) -> None: ...

class AgentRegistered(_message.Message):
    __slots__ = ("agent_id", "master_info", "ping_interval_seconds", "ping_timeout_seconds")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_INFO_FIELD_NUMBER: _ClassVar[int]
    PING_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PING_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    agent_id: _mensa_pb2.AgentID
    master_info: _mensa_pb2.MasterInfo
    ping_interval_seconds: float
    ping_timeout_seconds: float
    def __init__(self, agent_id: _Optional[_Union[_mensa_pb2.AgentID, _Mapping]] = ..., master_info: _Optional[_Union[_mensa_pb2.MasterInfo, _Mapping]] = ..., ping_interval_seconds: _Optional[float] = ..., ping_timeout_seconds: _Optional[float] = ...) -> None: ...

class RunTask(_message.Message):
    __slots__ = ("framework", "task")
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    framework: _mensa_pb2.FrameworkInfo
    task: _mensa_pb2.TaskInfo
    def __init__(self, framework: _Optional[_Union[_mensa_pb2.FrameworkInfo, _Mapping]] = ..., task: _Optional[_Union[_mensa_pb2.TaskInfo, _Mapping]] = ...) -> None: ...

class KillTask(_message.Message):
    __slots__ = ("framework_id", "task_id", "kill_policy")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KILL_POLICY_FIELD_NUMBER: _ClassVar[int]
    framework_id: _mensa_pb2.FrameworkID
    task_id: _mensa_pb2.TaskID
    kill_policy: _mensa_pb2.KillPolicy
    def __init__(self, framework_id: _Optional[_Union[_mensa_pb2.FrameworkID, _Mapping]] = ..., task_id: _Optional[_Union[_mensa_pb2.TaskID, _Mapping]] = ..., kill_policy: _Optional[_Union[_mensa_pb2.KillPolicy, _Mapping]] = ...) -> None: ...

class StatusUpdate(_message.Message):
    __slots__ = ("framework_id", "status", "latest_state")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATEST_STATE_FIELD_NUMBER: _ClassVar[int]
    framework_id: _mensa_pb2.FrameworkID
    status: _mensa_pb2.TaskStatus
    latest_state: _mensa_pb2.TaskState
    def __init__(self, framework_id: _Optional[_Union[_mensa_pb2.FrameworkID, _Mapping]] = ..., status: _Optional[_Union[_mensa_pb2.TaskStatus, _Mapping]] = ..., latest_state: _Optional[_Union[_mensa_pb2.TaskState, str]] = ...) -> None: ...

class StatusUpdateAcknowledgement(_message.Message):
    __slots__ = ("agent_id", "framework_id", "task_id", "uuid")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    agent_id: _mensa_pb2.AgentID
    framework_id: _mensa_pb2.FrameworkID
    task_id: _mensa_pb2.TaskID
    uuid: bytes
    def __init__(self, agent_id: _Optional[_Union[_mensa_pb2.AgentID, _Mapping]] = ..., framework_id: _Optional[_Union[_mensa_pb2.FrameworkID, _Mapping]] = ..., task_id: _Optional[_Union[_mensa_pb2.TaskID, _Mapping]] = ..., uuid: _Optional[bytes] = ...) -> None: ...

class ShutdownFramework(_message.Message):
    __slots__ = ("framework_id",)
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    framework_id: _mensa_pb2.FrameworkID
    def __init__(self, framework_id: _Optional[_Union[_mensa_pb2.FrameworkID, _Mapping]] = ...) -> None: ...

class FrameworkToExecutor(_message.Message):
    __slots__ = ("agent_id", "framework_id", "executor_id", "data")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    agent_id: _mensa_pb2.AgentID
    framework_id: _mensa_pb2.FrameworkID
    executor_id: _mensa_pb2.ExecutorID
    data: bytes
    def __init__(self, agent_id: _Optional[_Union[_mensa_pb2.AgentID, _Mapping]] = ..., framework_id: _Optional[_Union[_mensa_pb2.FrameworkID, _Mapping]] = ..., executor_id: _Optional[_Union[_mensa_pb2.ExecutorID, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ShutdownAgent(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class MasterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MasterInfoResponse(_message.Message):
    __slots__ = ("master_info", "leading", "leader")
    MASTER_INFO_FIELD_NUMBER: _ClassVar[int]
    LEADING_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    master_info: _mensa_pb2.MasterInfo
    leading: bool
    leader: _mensa_pb2.MasterInfo
    def __init__(self, master_info: _Optional[_Union[_mensa_pb2.MasterInfo, _Mapping]] = ..., leading: _Optional[bool] = ..., leader: _Optional[_Union[_mensa_pb2.MasterInfo, _Mapping]] = ...) -> None: ...

class Registry(_message.Message):
    __slots__ = ("agents", "unreachable", "removed_agents", "frameworks", "removed_frameworks", "weights", "quotas", "reservations", "revision")
    class Agent(_message.Message):
        __slots__ = ("info", "admitted_at", "http_port", "advertise_ip")
        INFO_FIELD_NUMBER: _ClassVar[int]
        ADMITTED_AT_FIELD_NUMBER: _ClassVar[int]
        HTTP_PORT_FIELD_NUMBER: _ClassVar[int]
        ADVERTISE_IP_FIELD_NUMBER: _ClassVar[int]
        info: _mensa_pb2.AgentInfo
        admitted_at: float
        http_port: int
        advertise_ip: str
        def __init__(self, info: _Optional[_Union[_mensa_pb2.AgentInfo, _Mapping]] = ..., admitted_at: _Optional[float] = ..., http_port: _Optional[int] = ..., advertise_ip: _Optional[str] = ...) -> None: ...
    class UnreachableAgent(_message.Message):
        __slots__ = ("info", "since")
        INFO_FIELD_NUMBER: _ClassVar[int]
        SINCE_FIELD_NUMBER: _ClassVar[int]
        info: _mensa_pb2.AgentInfo
        since: float
        def __init__(self, info: _Optional[_Union[_mensa_pb2.AgentInfo, _Mapping]] = ..., since: _Optional[float] = ...) -> None: ...
    class RemovedAgent(_message.Message):
        __slots__ = ("id", "removed_at")
        ID_FIELD_NUMBER: _ClassVar[int]
        REMOVED_AT_FIELD_NUMBER: _ClassVar[int]
        id: _mensa_pb2.AgentID
        removed_at: float
        def __init__(self, id: _Optional[_Union[_mensa_pb2.AgentID, _Mapping]] = ..., removed_at: _Optional[float] = ...) -> None: ...
    class Framework(_message.Message):
        __slots__ = ("info", "registered_at", "disconnected_at")
        INFO_FIELD_NUMBER: _ClassVar[int]
        REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
        DISCONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
        info: _mensa_pb2.FrameworkInfo
        registered_at: float
        disconnected_at: float
        def __init__(self, info: _Optional[_Union[_mensa_pb2.FrameworkInfo, _Mapping]] = ..., registered_at: _Optional[float] = ..., disconnected_at: _Optional[float] = ...) -> None: ...
    class RemovedFramework(_message.Message):
        __slots__ = ("id", "removed_at")
        ID_FIELD_NUMBER: _ClassVar[int]
        REMOVED_AT_FIELD_NUMBER: _ClassVar[int]
        id: _mensa_pb2.FrameworkID
        removed_at: float
        def __init__(self, id: _Optional[_Union[_mensa_pb2.FrameworkID, _Mapping]] = ..., removed_at: _Optional[float] = ...) -> None: ...
    class Weight(_message.Message):
        __slots__ = ("role", "weight")
        ROLE_FIELD_NUMBER: _ClassVar[int]
        WEIGHT_FIELD_NUMBER: _ClassVar[int]
        role: str
        weight: float
        def __init__(self, role: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...
    class Quota(_message.Message):
        __slots__ = ("role", "guarantee", "limit", "has_limit", "zero_limits")
        ROLE_FIELD_NUMBER: _ClassVar[int]
        GUARANTEE_FIELD_NUMBER: _ClassVar[int]
        LIMIT_FIELD_NUMBER: _ClassVar[int]
        HAS_LIMIT_FIELD_NUMBER: _ClassVar[int]
        ZERO_LIMITS_FIELD_NUMBER: _ClassVar[int]
        role: str
        guarantee: _containers.RepeatedCompositeFieldContainer[_mensa_pb2.Resource]
        limit: _containers.RepeatedCompositeFieldContainer[_mensa_pb2.Resource]
        has_limit: bool
        zero_limits: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, role: _Optional[str] = ..., guarantee: _Optional[_Iterable[_Union[_mensa_pb2.Resource, _Mapping]]] = ..., limit: _Optional[_Iterable[_Union[_mensa_pb2.Resource, _Mapping]]] = ..., has_limit: _Optional[bool] = ..., zero_limits: _Optional[_Iterable[str]] = ...) -> None: ...
    class Reservations(_message.Message):
        __slots__ = ("agent_id", "resources")
        AGENT_ID_FIELD_NUMBER: _ClassVar[int]
        RESOURCES_FIELD_NUMBER: _ClassVar[int]
        agent_id: _mensa_pb2.AgentID
        resources: _containers.RepeatedCompositeFieldContainer[_mensa_pb2.Resource]
        def __init__(self, agent_id: _Optional[_Union[_mensa_pb2.AgentID, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[_mensa_pb2.Resource, _Mapping]]] = ...) -> None: ...
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Registry.Agent]
    unreachable: _containers.RepeatedCompositeFieldContainer[Registry.UnreachableAgent]
    removed_agents: _containers.RepeatedCompositeFieldContainer[Registry.RemovedAgent]
    frameworks: _containers.RepeatedCompositeFieldContainer[Registry.Framework]
    removed_frameworks: _containers.RepeatedCompositeFieldContainer[Registry.RemovedFramework]
    weights: _containers.RepeatedCompositeFieldContainer[Registry.Weight]
    quotas: _containers.RepeatedCompositeFieldContainer[Registry.Quota]
    reservations: _containers.RepeatedCompositeFieldContainer[Registry.Reservations]
    revision: int
    def __init__(self, agents: _Optional[_Iterable[_Union[Registry.Agent, _Mapping]]] = ..., unreachable: _Optional[_Iterable[_Union[Registry.UnreachableAgent, _Mapping]]] = ..., removed_agents: _Optional[_Iterable[_Union[Registry.RemovedAgent, _Mapping]]] = ..., frameworks: _Optional[_Iterable[_Union[Registry.Framework, _Mapping]]] = ..., removed_frameworks: _Optional[_Iterable[_Union[Registry.RemovedFramework, _Mapping]]] = ..., weights: _Optional[_Iterable[_Union[Registry.Weight, _Mapping]]] = ..., quotas: _Optional[_Iterable[_Union[Registry.Quota, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[Registry.Reservations, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...
