"""Annotation: stack frames -> QEMU layers and explanations; accesses -> registers.

Everything this stage knows is in data files under ``rules/``: ``layers.toml`` for frames
and ``registers/<device>.toml`` for register maps. Source text comes through a
:class:`SourceProvider` (a local tree, or a capture's ``source-snippets.json``).
"""

from qtrace.annotate.layers import (
    UNKNOWN_LAYER,
    AnnotatedFrame,
    AnnotatedStack,
    Layer,
    LayerRule,
    RuleSet,
    annotate_stack,
    default_rules,
    load_rules,
)
from qtrace.annotate.links import qemu_tag, source_url
from qtrace.annotate.registers import (
    Decoded,
    FieldValue,
    Register,
    RegisterMap,
    decode_access,
    known_devices,
    load_register_map,
    register_map_for,
)
from qtrace.annotate.source import (
    SNIPPETS_FILE,
    DirectorySourceProvider,
    SourceProvider,
    SourceSnippets,
    build_snippets,
    capture_source,
    write_source_snippets,
)

__all__ = [
    "UNKNOWN_LAYER",
    "AnnotatedFrame",
    "AnnotatedStack",
    "Layer",
    "LayerRule",
    "RuleSet",
    "annotate_stack",
    "default_rules",
    "load_rules",
    "qemu_tag",
    "source_url",
    "Decoded",
    "FieldValue",
    "Register",
    "RegisterMap",
    "decode_access",
    "known_devices",
    "load_register_map",
    "register_map_for",
    "SNIPPETS_FILE",
    "DirectorySourceProvider",
    "SourceProvider",
    "SourceSnippets",
    "build_snippets",
    "capture_source",
    "write_source_snippets",
]
