"""Serial ports on this machine, with USB identity, for ``tongban devices list``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from serial.tools import list_ports

KNOWN_USB: dict[tuple[int, int], str] = {
    (0x0400, 0xC35A): "ID card reader on vendor bulk endpoints (not a serial port: unsupported)",
}
"""USB identities worth a remark; most readers enumerate as a generic USB-serial bridge."""


@dataclass(frozen=True)
class SerialPortInfo:
    """One serial port as the OS reports it."""

    device: str
    description: str
    vid_pid: str | None
    serial_number: str | None
    manufacturer: str | None
    location: str | None
    remark: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def list_serial_ports(include_all: bool = False) -> list[SerialPortInfo]:
    """USB and other real serial ports; legacy ttyS ports without hardware only with ``all``."""
    out = []
    for port in sorted(list_ports.comports(include_links=True), key=lambda p: p.device):
        has_usb = port.vid is not None and port.pid is not None
        if not include_all and not has_usb and port.description in ("n/a", ""):
            continue
        vid_pid = f"{port.vid:04X}:{port.pid:04X}" if has_usb else None
        remark = KNOWN_USB.get((port.vid, port.pid)) if has_usb else None
        out.append(SerialPortInfo(port.device, port.description, vid_pid, port.serial_number,
                                  port.manufacturer, port.location, remark))
    return out
