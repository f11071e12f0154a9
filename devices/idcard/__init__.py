"""Second-generation ID card readers over serial (the GA 467 SAM protocol).

The modules follow the spec (../shared/specs/idcard-ga467.md): ``frames`` (preamble, length,
checksum), ``commands`` (the command table), ``status`` (SW3 codes), ``cardtext`` (the text
layouts of the four card types), ``idnumber`` (GB 11643), ``photo`` (the WLT block and its
decoder plug-ins), ``reader`` (the driver), ``watcher`` (insert/remove events) and
``simulator`` (a virtual reader on a pty pair).
"""

from devices.idcard.cardtext import CardType, IdCard
from devices.idcard.errors import (
    ChecksumError,
    FrameError,
    IdCardError,
    PortGoneError,
    ReaderTimeout,
    StatusError,
)
from devices.idcard.reader import CardRead, IdCardReader, ReaderConfig

__all__ = [
    "CardRead",
    "CardType",
    "ChecksumError",
    "FrameError",
    "IdCard",
    "IdCardError",
    "IdCardReader",
    "PortGoneError",
    "ReaderConfig",
    "ReaderTimeout",
    "StatusError",
]
