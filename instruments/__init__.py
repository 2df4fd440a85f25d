"""The lab's wire: reading types, driver interfaces, the ZeroMQ protocol, server and client.

Public names are listed in ``__all__``; modules not re-exported here are internal.
"""

from instruments.client import InstrumentClient
from instruments.drivers import DIFFRACTOMETER, PDF, SAXS, SYNTHESISER, XAS, Driver, JobContext
from instruments.emergency import stop_all
from instruments.errors import (
    InstrumentBusy,
    InstrumentError,
    InstrumentStopped,
    InstrumentTimeout,
    InstrumentUnreachable,
    JobAborted,
    JobFailed,
    JobInterrupted,
    LeaseError,
    ProtocolError,
    RemoteError,
    Unauthorized,
)
from instruments.events import EventSubscriber
from instruments.keys import generate_keypair, load_keypair, load_public_key
from instruments.protocol import (
    PROTOCOL_VERSION,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from instruments.readings import (
    Diffractogram,
    PairDistribution,
    Reading,
    ScatteringCurve,
    Spectrum,
    reading_from_dict,
)
from instruments.security import CONTROLLER, VIEWER, ClientSecurity, ServerSecurity
from instruments.server import InstrumentServer
from instruments.service import InstrumentService

__all__ = [
    # readings
    "Diffractogram",
    "ScatteringCurve",
    "Spectrum",
    "PairDistribution",
    "Reading",
    "reading_from_dict",
    # drivers
    "Driver",
    "JobContext",
    "SYNTHESISER",
    "DIFFRACTOMETER",
    "SAXS",
    "PDF",
    "XAS",
    # protocol
    "PROTOCOL_VERSION",
    "Request",
    "Reply",
    "encode_request",
    "decode_request",
    "encode_reply",
    "decode_reply",
    # server and client
    "InstrumentServer",
    "InstrumentService",
    "InstrumentClient",
    "EventSubscriber",
    "stop_all",
    # security
    "ServerSecurity",
    "ClientSecurity",
    "VIEWER",
    "CONTROLLER",
    "generate_keypair",
    "load_keypair",
    "load_public_key",
    # errors
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentUnreachable",
    "ProtocolError",
    "RemoteError",
    "InstrumentBusy",
    "InstrumentStopped",
    "LeaseError",
    "Unauthorized",
    "JobFailed",
    "JobInterrupted",
    "JobAborted",
]
