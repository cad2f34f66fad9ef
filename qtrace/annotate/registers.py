"""Register decoding for reports: a trace access -> the register it touched and its fields.

The maps belong to the device packs (:mod:`qtrace.devices`); this module only applies the
right one to an access. An offset no map lists decodes as unknown; nothing is guessed.
"""

from __future__ import annotations

from qtrace.devices import Decoded, register_map_for
from qtrace.trace import Access

__all__ = ["decode_access"]


def decode_access(device: str, access: Access) -> Decoded:
    """Decode one trace access of ``device``; unknown when no map covers it."""
    register_map = register_map_for(device, access.space)
    if register_map is None:
        return Decoded(f"unknown@{access.offset:#x}", False)
    return register_map.decode(access.space, access.offset, access.size, access.value)
