"""The case package the kiosk builds at the end of the citizen's steps: ``identity.json`` (card
fields, the verification record, agent and represented person), the card photo and the best
live still, and one JPEG per captured page, listed in a manifest signed with the kiosk's
Ed25519 key. A clerk's re-scan or full-resolution capture travels as a numbered supplement
to the same case.

``identity.json`` is the format the desk's case page renders::

    {"card": {card_type, name, id_number, id_number_valid, valid_from, valid_to,
              valid_long_term, ...},
     "verification": {decision, distance, threshold, review_band, liveness: {passed,
                      simulated, steps: [...]}, engine, ...},
     "agent": bool, "represented": [names], "simulated": bool}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.spool import Package
from remote_desk.package import Manifest, describe_file, sign


@dataclass
class CapturedFile:
    """One file of the case (a page, a photo): bytes stay in memory, never in logs."""

    name: str
    data: bytes = field(repr=False)
    content_type: str = "image/jpeg"
    material: str | None = None


def identity_document(card: dict[str, Any] | None, verification: dict[str, Any] | None, *,
                      agent: bool, simulated: bool) -> bytes:
    """``identity.json``: what the clerk needs to know who is applying, and how sure we are."""
    card = dict(card or {})
    represented = [str(card["name"])] if agent and card.get("name") else []
    doc = {"card": card, "verification": verification or {}, "agent": agent,
           "represented": represented, "simulated": simulated}
    return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()


def build_package(*, case_id: str, kiosk_id: str, centre: str, matter: str,
                  files: list[CapturedFile], key: Ed25519PrivateKey, simulated: bool,
                  supplement: int = 0, copy: int = 0) -> Package:
    """Sign a manifest over ``files``; the result goes to the spool, then to the desk.

    ``copy``: the n-th full package of one case (a transfer sends the case to another centre
    again): spooled under its own name so that copies never overwrite each other."""
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ValueError("two files of one package share a name")
    manifest = Manifest(
        case_id=case_id, kiosk_id=kiosk_id, centre=centre, matter=matter,
        created_at=datetime.now(UTC), simulated=simulated, supplement=supplement,
        files=[describe_file(f.name, f.data, f.content_type, f.material) for f in files])
    package_id = case_id if supplement == 0 else f"{case_id}-s{supplement}"
    if copy:
        package_id += f"-c{copy}"
    return Package(package_id, manifest.model_dump_json().encode(), sign(manifest, key),
                   {f.name: (f.data, f.content_type) for f in files})
